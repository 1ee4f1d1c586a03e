"""The scale data set: millions of real stored invoices in a database kept between runs (bench/bench_scale.py
measures it). Built once and grown: `python -m bench.scale_data --to 1000000`, later `--to 10000000`; a rerun
resumes after the last day written and never rebuilds what exists (table `scale_build` says how far it got).

Every row is a real record made by the project's own sealing path (`numbering.unplaced` + `numbering.placed`,
`formats.void_content`, the keyring's active key): record hashes chained per series (a new year's series chained
to the same label's last record), Ed25519 signatures, the check codes of the data set's secret. Issue dates run
day by day from START, DAILY records a day, over ISSUERS issuers with 1-4 series each (volumes skewed, as real
issuers' are); about 1 % of invoices are voided and 0.5 % reversed by a credit note the same day, 5 % are
postal, with a delivery order manifested and dispatched on the day's manifest of the operator of its province.
Every record is in the transparency log (leaves, tiles and a signed checkpoint, by `merkle.append`, the
sequencer's own function), in the order of issue.

Two generator processes seal a day's records (each its half of the series) while this process COPYs the day
before, in one transaction per day (records, series heads, orders, manifests, log, progress), so a stop loses
at most the day being written. Environment: SCALE_DB_URL (default the local PostgreSQL, database
invoiceloop_scale), SCALE_DATA_DIR (the keys; default ~/.cache/invoiceloop-scale, kept with the database).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import asyncpg

from invoiceloop.settings import Settings
from invoicing import chain_repository, db, formats, merkle, numbering, repository, validation
from invoicing import log_repository as logrepo
from invoicing.corrections import credit_lines, sum_credited
from invoicing.model import DEFAULT_TAX_RATES, SHANGHAI, Invoice
from invoicing.repository import Issuer
from invoicing.transparency import LogSigner, stored_tiles

SERVER = os.environ.get("BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_URL = os.environ.get("SCALE_DB_URL", SERVER.rsplit("/", 1)[0] + "/invoiceloop_scale")
DATA_DIR = Path(os.environ.get("SCALE_DATA_DIR", Path.home() / ".cache" / "invoiceloop-scale"))
SECRET = "scale-bench-secret"
START = date(2025, 1, 1)
DAILY = 14_306  # 10 M records in 699 days (2025-01-01 .. 2026-11-30)
ISSUERS = 2000
REGIONS = ("4401", "4403", "3101", "1101", "3301", "3201", "5101", "4201")
OPERATORS = (  # (name, S10 service, provinces): every province has one
    ("中国邮政速递", "EA", ["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34"]),
    ("顺丰邮政合作", "RR", ["35", "36", "37", "41", "42", "43", "44", "45", "46", "50", "51"]),
    ("西部邮政", "CP", ["52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82"]),
)
VOID_SHARE, CREDIT_SHARE, POSTAL_SHARE = 0.01, 0.005, 0.05
WORKERS = 2
BENCH_ISSUER = "基准"  # issuers bench_scale makes are named so; the builder leaves them alone

SCALE_TABLES = """
CREATE TABLE IF NOT EXISTS scale_build (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    days_done   int NOT NULL,
    records     bigint NOT NULL,
    wal_bytes   numeric NOT NULL DEFAULT 0,   -- WAL written by the build's day transactions
    build_s     float8 NOT NULL DEFAULT 0,    -- wall time spent building
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS scale_results (
    id          bigserial PRIMARY KEY,
    stored      bigint NOT NULL,
    measured_at timestamptz NOT NULL DEFAULT now(),
    figures     jsonb NOT NULL
);"""

INVOICE_COLUMNS = (
    "id issuer_id series_id chain_seq kind invoice_code invoice_number issue_date issued_at status total_amount "
    "total_tax total delivery_method original_invoice_id content record_hash prev_hash signature key_id voided_at "
    "void_reason"
).split()
VOID_COLUMNS = "series_id chain_seq invoice_id content record_hash prev_hash signature key_id".split()
ORDER_COLUMNS = (
    "id invoice_id issuer_id status province_code address phone tracking_number created_at updated_at operator_id "
    "manifest_id manifested_at invoice_code invoice_number"
).split()


def settings(url: str = DB_URL) -> Settings:
    """The data set's settings: its database, check-code secret and key folder."""
    return Settings(database_url=url, check_code_secret=SECRET, data_dir=DATA_DIR)


# ---------------------------------------------------------------- content


SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = [
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "磊",
    "洋",
    "艳",
    "勇",
    "军",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "秀英",
    "建华",
    "志强",
]
COMPANY = ["科技", "贸易", "餐饮", "建材", "物流", "电子", "服装", "食品", "医药", "文化传媒", "信息技术", "机械设备"]
CITIES = [
    ("广州市", "广东省", "510000"),
    ("上海市", "上海市", "200000"),
    ("北京市", "北京市", "100000"),
    ("成都市", "四川省", "610000"),
    ("杭州市", "浙江省", "310000"),
    ("武汉市", "湖北省", "430000"),
    ("西安市", "陕西省", "710000"),
    ("南京市", "江苏省", "210000"),
    ("昆明市", "云南省", "650000"),
    ("沈阳市", "辽宁省", "110000"),
    ("济南市", "山东省", "250000"),
    ("长沙市", "湖南省", "410000"),
]
PRODUCTS = [
    ("办公椅", "把", "100.00"),
    ("打印纸 A4", "箱", "189.00"),
    ("笔记本电脑", "台", "5999.00"),
    ("咨询服务费", "次", "2000.00"),
    ("矿泉水 550ml", "箱", "28.80"),
    ("工业用螺丝 M8", "千个", "86.50"),
    ("餐饮服务", "次", "368.00"),
    ("运输服务", "吨公里", "0.85"),
    ("软件许可证", "套", "12800.00"),
    ("水泥 P.O 42.5", "吨", "420.00"),
    ("医用口罩", "盒", "35.00"),
    ("会议室租赁", "天", "1500.00"),
]


def _person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def _drafts(rng: random.Random, count: int) -> tuple[list[numbering.Draft], list[numbering.Draft]]:
    """(electronic, postal) drafts made through the request validation, as an API request makes them."""
    electronic, postal = [], []
    for n in range(count):
        city, province, postcode = rng.choice(CITIES)
        name = _person(rng) if n % 3 else f"{city[:-1]}{rng.choice(COMPANY)}有限公司"
        lines = []
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 6))):
            desc, unit, price = rng.choice(PRODUCTS)
            qty = rng.choice(("1", "2", "3", "5", "10", "12", "0.5", "100"))
            rate = rng.choice(("0.13", "0.13", "0.09", "0.06", "0.03"))
            lines.append({"description": desc, "unit": unit, "quantity": qty, "unit_price": price, "tax_rate": rate})
        address = {
            "recipient": name if n % 3 else _person(rng),
            "line1": f"{rng.choice(('人民路', '中山路', '解放路', '建设大道'))} {rng.randint(1, 999)} 号",
            "city": city,
            "province": province,
            "postal_code": postcode,
            "country": "CN",
        }
        phone = f"+86139{rng.randint(0, 99_999_999):08d}" if n % 2 else None
        for delivery, out in (("electronic", electronic), ("postal", postal)):
            body = {
                "buyer": {
                    "name": name,
                    "phone": phone or (f"+86138{n:08d}" if delivery == "postal" else None),
                    "address": address if delivery == "postal" or n % 4 == 0 else None,
                },
                "lines": lines,
                "delivery": delivery,
                "series": "default",
                "remarks": rng.choice(("", "", "", "合同号 HT-2025-" + str(n), "请于三十日内付款")),
            }
            out.append(numbering.draft_of(validation.invoice_request(body, DEFAULT_TAX_RATES)))
    return electronic, postal


# ---------------------------------------------------------------- generating a day (in the worker processes)


@dataclass
class SeriesWork:
    """One series' head and how many invoices it issues on the day."""

    series_id: int
    issuer: Issuer
    label: str
    code: str
    last_number: int
    last_seq: int
    last_hash: str
    count: int


@dataclass
class DayRows:
    """What a worker made for its series on a day: rows to COPY, log entries (time, record hash) and the heads."""

    invoices: list[tuple[Any, ...]]
    voids: list[tuple[Any, ...]]
    orders: list[tuple[Any, ...]]  # (invoice id, issuer id, province, address JSON, phone, code, number, time)
    log: list[tuple[datetime, int, str]]
    heads: list[tuple[int, int, int, str]]  # series id, last number, last seq, last hash


def _day_start(day: date) -> datetime:
    return datetime.combine(day, dtime(8, 0), SHANGHAI).astimezone(UTC)


def _invoice_row(inv: Invoice, series_id: int, seq: int, content: str, key_id: str) -> list[Any]:
    t = inv.totals
    return [
        inv.id,
        inv.issuer_id,
        series_id,
        seq,
        inv.kind,
        inv.invoice_code,
        inv.invoice_number,
        inv.issue_date,
        inv.issued_at,
        "issued",
        t.total_amount,
        t.total_tax,
        t.total,
        inv.delivery_method,
        inv.original_invoice_id,
        content,
        inv.record_hash,
        inv.prev_hash,
        inv.signature,
        key_id,
        None,
        None,
    ]


def generate_day(
    issuing: numbering.Issuing, drafts: tuple[list[Any], list[Any]], day: date, work: list[SeriesWork], seed: int
) -> DayRows:
    """Seal the day's records of these series, in chain order: the invoices through the day, then the day's
    voids and credit notes (appended to the same chains in the evening)."""
    rng = random.Random(seed)
    signer = issuing.signers.current()
    start = _day_start(day)
    out = DayRows([], [], [], [], [])
    tick = 0
    for w in work:
        times = sorted(rng.uniform(0, 12 * 3600) for _ in range(w.count))
        made: list[tuple[Invoice, list[Any]]] = []
        notes: list[tuple[Any, ...]] = []
        number, seq, prev = w.last_number, w.last_seq, w.last_hash
        for offset in times:
            postal = rng.random() < POSTAL_SHARE
            draft = rng.choice(drafts[1] if postal else drafts[0])
            if draft.series != w.label:
                draft = numbering.Draft(draft.kind, w.label, draft.buyer, draft.lines, draft.delivery, draft.remarks)
            now = start + timedelta(seconds=offset, microseconds=rng.randint(0, 999_999))
            number, seq = number + 1, seq + 1
            inv, _, content = numbering.placed(
                numbering.unplaced(draft, w.issuer, now), w.code, number, prev, issuing, signer
            )
            prev = inv.record_hash
            row = _invoice_row(inv, w.series_id, seq, content, signer.key_id)
            made.append((inv, row))
            tick += 1
            out.log.append((now, tick, inv.record_hash))
            order = chain_repository._order_values(inv)
            if order is not None:
                out.orders.append((inv.id, inv.issuer_id, *order, inv.invoice_code, inv.invoice_number, now))
        evening = start + timedelta(hours=13)
        for inv, row in made:
            if inv.delivery_method == "postal":
                continue
            roll = rng.random()
            if roll < VOID_SHARE:
                seq += 1
                evening += timedelta(seconds=rng.randint(1, 60))
                reason = rng.choice(("开票信息有误", "购买方名称错误", "重复开具"))
                vc = formats.void_content(inv, reason=reason, voided_at=evening, prev_hash=prev)
                canonical = formats.canonical_bytes(vc)
                rec_hash = formats.sha256_hex(canonical)
                sig = signer.sign(formats.void_signing_core(vc, rec_hash))
                out.voids.append((w.series_id, seq, inv.id, canonical.decode(), rec_hash, prev, sig, signer.key_id))
                row[9], row[20], row[21] = "voided", evening, reason
                prev = rec_hash
                tick += 1
                out.log.append((evening, tick, rec_hash))
            elif roll < VOID_SHARE + CREDIT_SHARE:
                evening += timedelta(seconds=rng.randint(1, 60))
                lines = tuple(credit_lines(inv, sum_credited(inv.lines, []), None))
                draft = numbering.Draft("credit_note", w.label, inv.buyer, lines, "electronic", "退货", inv)
                number, seq = number + 1, seq + 1
                note, _, content = numbering.placed(
                    numbering.unplaced(draft, w.issuer, evening), w.code, number, prev, issuing, signer
                )
                prev = note.record_hash
                notes.append(tuple(_invoice_row(note, w.series_id, seq, content, signer.key_id)))
                row[9] = "reversed"
                tick += 1
                out.log.append((evening, tick, note.record_hash))
        out.invoices.extend(tuple(row) for _, row in made)
        out.invoices.extend(notes)
        out.heads.append((w.series_id, number, seq, prev))
    return out


def worker_main(pipe: Connection, data_dir: str, seed: int) -> None:
    """A generator process: receives (day, series work, seed), answers DayRows, until it receives None."""
    from invoiceloop.app import load_issuing

    issuing = load_issuing(Settings(check_code_secret=SECRET, data_dir=Path(data_dir)))
    issuing = numbering.Issuing(issuing.secret, numbering.FixedSigner(issuing.signers.current()))
    drafts = _drafts(random.Random(seed), 400)
    while (job := pipe.recv()) is not None:
        day, work, day_seed = job
        pipe.send(generate_day(issuing, drafts, day, work, day_seed))


# ---------------------------------------------------------------- the builder (this process)


@dataclass
class Series:
    id: int
    issuer: Issuer
    label: str
    year: int
    code: str
    last_number: int
    last_seq: int
    last_hash: str
    weight: float


class Builder:
    """Writes days in order; all of its state is in the database (resumable)."""

    def __init__(self, conn: asyncpg.Connection, log_signer: LogSigner) -> None:
        self.conn, self.log_signer = conn, log_signer
        self.issuers: dict[str, Issuer] = {}
        self.labels: dict[str, list[tuple[str, float]]] = {}
        self.series: dict[int, Series] = {}
        self.by_key: dict[tuple[str, str, int], Series] = {}
        self.operators: list[dict[str, Any]] = []
        self.province_operator: dict[str, dict[str, Any]] = {}

    async def load(self) -> None:
        rows = await self.conn.fetch(  # not the issuers the bench makes
            "SELECT id, name, tax_id, region, address, phone FROM issuers WHERE name NOT LIKE $1", BENCH_ISSUER + "%"
        )
        for r in rows:
            self.issuers[str(r["id"])] = Issuer(
                str(r["id"]), r["name"], r["tax_id"], r["region"], r["address"], r["phone"]
            )
        for iid in sorted(self.issuers):  # volumes and labels drawn from the issuer id: the same on every run
            rng = random.Random(iid)
            weight = rng.lognormvariate(0, 1.3)
            labels = ["default", "retail", "online", "wholesale"][: rng.choice((1, 1, 2, 2, 3, 4))]
            self.labels[iid] = [(label, weight / len(labels)) for label in labels]
        for r in await self.conn.fetch(
            "SELECT id, issuer_id, label, year, invoice_code, last_number, last_seq, last_hash FROM series"
        ):
            iid = str(r["issuer_id"])
            if iid not in self.issuers:
                continue
            weight = dict(self.labels.get(iid, [])).get(r["label"], 0.0)
            s = Series(
                r["id"],
                self.issuers[iid],
                r["label"],
                r["year"],
                r["invoice_code"],
                r["last_number"],
                r["last_seq"],
                r["last_hash"],
                weight,
            )
            self.series[s.id] = s
            self.by_key[iid, s.label, s.year] = s
        for r in await self.conn.fetch(
            "SELECT id, provinces, s10_service, s10_country, last_serial FROM operators ORDER BY name"
        ):
            op = dict(r)
            self.operators.append(op)
            for p in r["provinces"]:
                self.province_operator[p] = op

    async def open_year(self, year: int) -> list[Series]:
        """Every issuer's series of `year` (chained to the same label's last record of the year before), in memory
        only: `write_series` writes them in the transaction of the first day that uses them."""
        made = []
        next_id = max(self.series, default=0) + 1
        serials: Counter[str] = Counter()
        taken = {
            r["region"]: r["last_serial"]
            for r in await self.conn.fetch("SELECT region, last_serial FROM code_serials WHERE year = $1", year)
        }
        for iid in sorted(self.issuers):
            issuer = self.issuers[iid]
            for label, weight in self.labels[iid]:
                if (iid, label, year) in self.by_key:
                    continue
                serials[issuer.region] += 1
                code = f"{issuer.region}{year % 100:02d}{taken.get(issuer.region, 0) + serials[issuer.region]:06d}"
                before = self.by_key.get((iid, label, year - 1))
                last = before.last_hash if before else formats.ZERO_HASH
                made.append(Series(next_id, issuer, label, year, code, 0, 0, last, weight))
                next_id += 1
        for s in made:
            self.series[s.id] = s
            self.by_key[s.issuer.id, s.label, year] = s
        return made

    async def write_series(self, made: list[Series]) -> None:
        """Write series `open_year` made, and take their invoice-code serials."""
        serials = Counter((s.issuer.region, s.year) for s in made)
        await self.conn.executemany(
            "INSERT INTO code_serials AS c (region, year, last_serial) VALUES ($1, $2, $3) "
            "ON CONFLICT (region, year) DO UPDATE SET last_serial = c.last_serial + excluded.last_serial",
            [(r, y, n) for (r, y), n in serials.items()],
        )
        await self.conn.copy_records_to_table(
            "series",
            records=[
                (
                    s.id,
                    uuid.UUID(s.issuer.id),
                    s.label,
                    s.year,
                    s.code,
                    0,
                    0,
                    s.last_hash,
                    datetime.combine(date(s.year, 1, 1), dtime(0, 0), SHANGHAI),
                )
                for s in made
            ],
            columns=[
                "id",
                "issuer_id",
                "label",
                "year",
                "invoice_code",
                "last_number",
                "last_seq",
                "last_hash",
                "created_at",
            ],
        )
        await self.conn.execute("SELECT setval('series_id_seq', (SELECT max(id) FROM series))")

    def plan(self, day: date, seed: int) -> list[list[SeriesWork]]:
        """The day's invoices spread over the year's series by weight, split between the workers."""
        year = day.year
        live = sorted((s for s in self.series.values() if s.year == year), key=lambda s: s.id)
        rng = random.Random(seed)
        counts = Counter(s.id for s in rng.choices(live, weights=[s.weight for s in live], k=DAILY))
        parts: list[list[SeriesWork]] = [[] for _ in range(WORKERS)]
        for s in live:
            if counts[s.id]:
                parts[s.id % WORKERS].append(
                    SeriesWork(s.id, s.issuer, s.label, s.code, s.last_number, s.last_seq, s.last_hash, counts[s.id])
                )
        return parts

    async def write_day(self, day: date, parts: list[DayRows]) -> int:
        """One transaction: the day's records, series heads, orders and manifests, log and progress."""
        conn = self.conn
        invoices = [r for p in parts for r in p.invoices]
        voids = [r for p in parts for r in p.voids]
        await conn.copy_records_to_table("invoices", records=invoices, columns=INVOICE_COLUMNS)
        if voids:
            await conn.copy_records_to_table("voids", records=voids, columns=VOID_COLUMNS)
        heads = [h for p in parts for h in p.heads]
        await conn.execute(
            """UPDATE series s SET last_number = h.n, last_seq = h.q, last_hash = h.h
                 FROM unnest($1::bigint[], $2::int[], $3::bigint[], $4::text[]) AS h(id, n, q, h) WHERE s.id = h.id""",
            [h[0] for h in heads],
            [h[1] for h in heads],
            [h[2] for h in heads],
            [h[3] for h in heads],
        )
        for sid, number, seq, last in heads:
            s = self.series[sid]
            s.last_number, s.last_seq, s.last_hash = number, seq, last
        await self._orders(day, [o for p in parts for o in p.orders])
        await self._log([e for p in parts for e in p.log])
        return len(invoices) + len(voids)

    async def _orders(self, day: date, orders: list[tuple[Any, ...]]) -> None:
        """Postal orders, put on the day's manifest of their province's operator (closed: dispatched)."""
        if not orders:
            return
        conn = self.conn
        by_op: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for o in orders:
            by_op[str(self.province_operator[o[2]]["id"])].append(o)
        seq = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM manifests")
        evening = datetime.combine(day, dtime(18, 0), SHANGHAI)
        rows, manifests = [], []
        from delivery.s10 import make_tracking_number

        for op in self.operators:
            mine = by_op.get(str(op["id"]), [])
            if not mine:
                continue
            seq += 1
            mid = uuid.uuid4()
            number = f"M{day:%Y%m%d}{seq:08d}"
            manifests.append((mid, seq, op["id"], number, "closed", evening, evening + timedelta(hours=2)))
            for o in sorted(mine, key=lambda o: o[7]):
                op["last_serial"] += 1
                tracking = make_tracking_number(op["s10_service"], op["last_serial"], op["s10_country"])
                rows.append(
                    (
                        uuid.uuid4(),
                        o[0],
                        o[1],
                        "dispatched",
                        o[2],
                        o[3],
                        o[4],
                        tracking,
                        o[7],
                        evening + timedelta(hours=2),
                        op["id"],
                        mid,
                        evening,
                        o[5],
                        o[6],
                    )
                )
        await conn.copy_records_to_table(
            "manifests",
            records=manifests,
            columns=["id", "seq", "operator_id", "manifest_number", "status", "created_at", "closed_at"],
        )
        await conn.copy_records_to_table("delivery_orders", records=rows, columns=ORDER_COLUMNS)
        await conn.executemany(
            "UPDATE operators SET last_serial = $2 WHERE id = $1",
            [(op["id"], op["last_serial"]) for op in self.operators],
        )
        await conn.execute("SELECT setval('manifest_numbers', $1)", seq)

    async def _log(self, entries: list[tuple[datetime, int, str]]) -> None:
        """The day's records into the transparency log, in order of issue (chain order within each series)."""
        conn = self.conn
        entries.sort(key=lambda e: (e[0], e[1]))
        head = await logrepo.head(conn)
        size = head.size if head else 0
        tiles = await stored_tiles(conn, merkle.tiles_for_append(size)) if size else {}
        appended = merkle.append(size, tiles, [bytes.fromhex(h) for _, _, h in entries])
        await logrepo.write_tiles(conn, appended.tiles)
        await conn.copy_records_to_table(
            "log_leaves",
            records=[(size + i, h, t + timedelta(seconds=1)) for i, (t, _, h) in enumerate(entries)],
            columns=["leaf_index", "record_hash", "sequenced_at"],
        )
        await logrepo.set_head(conn, appended.size, appended.root, self.log_signer.sign(appended.size, appended.root))


async def init_db(url: str) -> None:
    """Create and migrate the database, then the issuers (each with an API key nobody holds) and operators."""
    name = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(SERVER)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await db.migrate_url(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(SCALE_TABLES)
        if await conn.fetchval("SELECT count(*) FROM issuers"):
            return
        from tests.conftest import valid_uscc

        rng = random.Random(2025)
        async with conn.transaction():
            for n in range(ISSUERS):
                region = REGIONS[n % len(REGIONS)]
                city = rng.choice(CITIES)[0]
                issuer = Issuer(
                    str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    f"{city[:-1]}{rng.choice(COMPANY)}{n:04d}有限公司",
                    valid_uscc(region + "01"),
                    region,
                    f"{city}{rng.choice(('天河区', '浦东新区', '朝阳区', '高新区'))} {n} 号",
                    f"+8620{rng.randint(10_000_000, 99_999_999)}",
                )
                await repository.insert_issuer(conn, issuer)
                await repository.create_key(conn, "issuer", issuer.id)
            serial = 0
            for name_, service, provinces in OPERATORS:
                await conn.execute(
                    "INSERT INTO operators (id, name, provinces, s10_service, s10_country, serial_first, serial_last,"
                    " last_serial) VALUES ($1, $2, $3, $4, 'CN', $5, $6, $5 - 1)",
                    uuid.uuid4(),
                    name_,
                    provinces,
                    service,
                    serial,
                    serial + 9_999_999,
                )
                serial += 10_000_000
            await conn.execute("INSERT INTO scale_build (days_done, records) VALUES (0, 0)")
    finally:
        await conn.close()


async def build(url: str, target: int, max_seconds: float) -> None:
    """Grow the data set day by day until it holds `target` records (or `max_seconds` have passed)."""
    from invoiceloop.app import load_issuing, log_signer

    await init_db(url)
    s = settings(url)
    load_issuing(s)  # the keyring and signing key, made on first use
    conn = await asyncpg.connect(url)
    await conn.execute("SET synchronous_commit = off")
    builder = Builder(conn, log_signer(s))
    await builder.load()
    days_done, records = await conn.fetchrow("SELECT days_done, records FROM scale_build")
    if records >= target:
        print(f"{url.rsplit('/', 1)[1]} holds {records:,} records already (target {target:,})")
        await _steady(conn)  # quick when nothing changed since
        await conn.close()
        return
    pipes, procs = [], []
    for w in range(WORKERS):
        parent, child = mp.Pipe()
        proc = mp.Process(target=worker_main, args=(child, str(DATA_DIR), 100 + w), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    started = time.monotonic()
    try:
        day_n = days_done
        pending = await _send(builder, pipes, day_n)
        while records < target and time.monotonic() - started < max_seconds:
            t0 = time.monotonic()
            parts = [p.recv() for p in pipes]
            gen_wait = time.monotonic() - t0
            day = START + timedelta(days=day_n)
            # the workers seal the next day while this one is written
            for sid, number, seq, last in (h for p in parts for h in p.heads):
                builder.series[sid].last_number, builder.series[sid].last_seq, builder.series[sid].last_hash = (
                    number,
                    seq,
                    last,
                )
            next_pending = None
            if records + sum(len(p.invoices) + len(p.voids) for p in parts) < target:
                next_pending = await _send(builder, pipes, day_n + 1)
            wal0 = await conn.fetchval("SELECT pg_current_wal_lsn()")
            async with conn.transaction():
                if not await logrepo.try_sequencer_lock(conn):
                    raise SystemExit("a sequencer is running on this database: stop the bench first")
                if pending:  # the series this day's plan opened
                    await builder.write_series(pending)
                written = await builder.write_day(day, parts)
                records += written
                await conn.execute(
                    "UPDATE scale_build SET days_done = $1, records = $2, updated_at = now(), "
                    "wal_bytes = wal_bytes + (pg_current_wal_lsn() - $3::pg_lsn), build_s = build_s + $4",
                    day_n + 1,
                    records,
                    wal0,
                    time.monotonic() - t0,
                )
            day_n += 1
            rate = records and written / (time.monotonic() - t0)
            print(
                f"{day} {written:6} records  total {records:11,}  {rate:7,.0f}/s  (waited {gen_wait:4.1f} s for "
                f"the generators)",
                flush=True,
            )
            pending = None if next_pending is None else next_pending
            if next_pending is None:
                break
        await _steady(conn)
    finally:
        for p in pipes:
            with contextlib.suppress(OSError):
                p.send(None)
        for proc in procs:
            proc.join(5)
            if proc.is_alive():  # blocked sending a day nobody will write
                proc.terminate()
        await conn.close()


async def _steady(conn: asyncpg.Connection) -> None:
    """VACUUM (ANALYZE) what the build wrote: statistics for the planner, the visibility map for index-only scans,
    hint bits set, as autovacuum leaves a live database (the build must not depend on it: it may be off)."""
    start = time.monotonic()
    for table in ("invoices", "voids", "series", "delivery_orders", "manifests", "log_leaves", "log_tiles"):
        await conn.execute(f"VACUUM (ANALYZE) {table}")
    print(f"vacuumed and analyzed in {time.monotonic() - start:.0f} s", flush=True)


async def _send(builder: Builder, pipes: list[Connection], day_n: int) -> list[Series]:
    """Plan the day (opening its year's series, in memory, when it is the first day of a year) and hand each
    worker its part; returns the series the plan opened (written with the day)."""
    day = START + timedelta(days=day_n)
    opened: list[Series] = []
    if not any(s.year == day.year for s in builder.series.values()):
        opened = await builder.open_year(day.year)
    parts = builder.plan(day, seed=day_n)
    for w, pipe in enumerate(pipes):
        pipe.send((day, parts[w], day_n * 100 + w))
    return opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--to", type=int, default=1_000_000, help="records to reach (resumes; never rebuilds)")
    parser.add_argument("--max-seconds", type=float, default=float("inf"), help="stop after this long (resumable)")
    parser.add_argument("--url", default=DB_URL)
    args = parser.parse_args()
    asyncio.run(build(args.url, args.to, args.max_seconds))


if __name__ == "__main__":
    sys.exit(main())
