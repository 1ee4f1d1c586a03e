"""Amounts in Chinese financial numerals (大写金额). Pure: no I/O.

Written by the People's Bank of China rules for filling in payment documents (《支付结算办法》,
附件一《正确填写票据和结算凭证的基本规定》), with these fixed choices (FORMATS.md, "Amounts in words"):

- Digits 零壹贰叁肆伍陆柒捌玖; units 拾 佰 仟, 万 and 亿 (and 万亿: 10**12 -> 壹万亿元整); currency
  units 元 角 分 (元, not 圆, as FORMATS.md's `226.00` -> 贰佰贰拾陆元整).
- 拾 always carries its digit: 10 -> 壹拾元整, 15 -> 壹拾伍元整, 100010 -> 壹拾万零壹拾元整.
- 整 follows 元 when 角 and 分 are both zero; an amount ending in 角 or 分 has no 整 (1.50 -> 壹元伍角).
  Zero is 零元整; below one yuan there is no 元 part (0.05 -> 伍分, 0.50 -> 伍角).
- Inside the integer part a run of zeros gives one 零 (1004 -> 壹仟零肆元整, 1010 -> 壹仟零壹拾元整);
  an all-zero 万 group is dropped with its 万, and its zeros give one 零 (100001000 -> 壹亿零壹仟元整).
- Where the rules allow either writing or omitting 零, we always OMIT it. That is: zeros at the tail
  of a written non-zero 万 (or 亿) group, i.e. 万位/亿位 zero, when the next digit is non-zero
  (107000.53 -> 壹拾万柒仟元伍角叁分, not 壹拾万零柒仟元...), and zeros at the 元位 when 角 is non-zero
  (1680.32 -> 壹仟陆佰捌拾元叁角贰分, not ...元零叁角贰分). Where the rules require 零 we write it:
  角 zero and 分 non-zero gives 零 after 元 (325.04 -> 叁佰贰拾伍元零肆分).
- The amount is first quantized to 2 decimals, half-up; a negative amount (credit note) starts with
  负 (a zero never does). |amount| must be below 10**16, else ValueError.
"""

from __future__ import annotations

import functools
from decimal import ROUND_HALF_UP, Decimal

__all__ = ["LIMIT", "amount_in_words"]

LIMIT = Decimal(10) ** 16
_CENT = Decimal("0.01")
_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_PLACES = ("", "拾", "佰", "仟")
_GROUPS = {4: "万", 8: "亿", 12: "万"}  # the group ending at this power of ten; 10**12 is 万亿


def amount_in_words(amount: Decimal) -> str:
    """`Decimal("226.00")` -> `贰佰贰拾陆元整`; `Decimal("-325.04")` -> `负叁佰贰拾伍元零肆分`."""
    return _words(_quantize(amount))  # checked before the cache: a float equal to a cached Decimal is still refused


@functools.lru_cache(maxsize=65536)  # totals repeat (a shop's prices), and this runs on every issue
def _words(value: Decimal) -> str:
    cents = int(abs(value) * 100)
    if cents == 0:
        return "零元整"
    yuan, jiao, fen = cents // 100, cents // 10 % 10, cents % 10
    sign = "负" if value < 0 else ""
    head = _integer_words(yuan) + "元" if yuan else ""
    if jiao == 0 and fen == 0:
        return sign + head + "整"
    jiao_words = _DIGITS[jiao] + "角" if jiao else ("零" if yuan else "")
    fen_words = _DIGITS[fen] + "分" if fen else ""
    return sign + head + jiao_words + fen_words


def _quantize(amount: Decimal) -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite() or abs(amount) >= LIMIT:
        raise ValueError(f"cannot write {amount!r} in words: need a finite Decimal below 10**16 in size")
    value = amount.quantize(_CENT, rounding=ROUND_HALF_UP)
    if abs(value) >= LIMIT:
        raise ValueError(f"cannot write {amount!r} in words: it rounds to 10**16 or more")
    return value


def _integer_words(number: int) -> str:
    """A positive whole number of yuan: 100010 -> 壹拾万零壹拾, 100001000 -> 壹亿零壹仟."""
    text = str(number)
    out: list[str] = []
    zero = False  # zeros were passed since the last digit written
    for i, char in enumerate(text):
        power = len(text) - 1 - i
        if char == "0":
            zero = True
        else:
            out.append(("零" if zero else "") + _DIGITS[int(char)] + _PLACES[power % 4])
            zero = False
        if power in _GROUPS:
            group_written = int(text[max(0, i - 3) : i + 1]) > 0
            if group_written or power == 8:  # 亿 stays when only the 万亿 part is non-zero
                out.append(_GROUPS[power])
            if group_written:
                zero = False  # 万位/亿位 zero before a non-zero digit: 零 omitted (module doc)
    return "".join(out)
