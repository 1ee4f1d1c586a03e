"""The two fonts of our PDFs: Helvetica, one of the 14 standard fonts (nothing to embed), for what it can
show, and a CJK TrueType font, embedded as subsets (`fontsubset`), for the rest; and text widths in them.

The CJK font is looked up and registered with reportlab at first use, so `INVOICELOOP_CJK_FONT` is read then.
"""

from __future__ import annotations

import os
from pathlib import Path

from reportlab.pdfbase import pdfmetrics

from invoicing.pdf.fontsubset import SubsetFont

__all__ = [
    "CJK_FONT_ENV",
    "LATIN_FONT",
    "SHARED_TEXT",
    "CJKFontMissing",
    "cjk_font",
    "find_cjk_font",
    "font_for",
    "text_width",
]

CJK_FONT_ENV = "INVOICELOOP_CJK_FONT"
CJK_FONT_NAME = "InvoiceCJK"
LATIN_FONT = "Helvetica"  # one of the 14 standard fonts: every viewer has it, nothing to embed
# WenQuanYi Zen Hei (TrueType outlines, which reportlab can embed as a subset; Noto CJK's CFF it refuses).
CJK_FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",  # Debian / Ubuntu: fonts-wqy-zenhei
    "/usr/share/fonts/wqy-zenhei/wqy-zenhei.ttc",  # Fedora: wqy-zenhei-fonts
    "/usr/share/fonts/wenquanyi/wqy-zenhei/wqy-zenhei.ttc",  # Arch: wqy-zenhei
)
# What every invoice prints in the CJK font, whatever it holds: embedded as one subset of the font built
# once per process (`fontsubset`). Other characters (names, addresses, items; the words of a credit note or
# a void) go into a subset of each document's own. Every unused character here costs every invoice its
# glyph, so only what the invoice's labels and figures need; at most 160 besides ASCII.
SHARED_TEXT = "".join(
    (
        "0123456789 ",  # dates, page numbers; figures in addresses and descriptions
        "零壹贰叁肆伍陆柒捌玖拾佰仟万亿元角分整",  # amounts in words (words.py)
        "（）：，、/-.",  # punctuation of labels, names, addresses and descriptions
        # The labels of `render.py` drawn in the CJK font (the all-Latin ones are drawn in Helvetica).
        "电子发票 e-Invoice 扫码查验 / Scan to verify 发票代码 发票号码 开票日期 校验码 年月日",
        "购买方 销售方 名称 Name 纳税人识别号 Tax ID 地址 Address 电话 Phone 收件人",
        "序号 项目名称 单位 数量 单价 金额 税率 税额 合计 Total 价税合计 （大写） （小写） 备注",
        "交付方式 Delivery：邮寄 Postal 电子 Electronic",
        "第 1 页 / 共 1 页  Page 1 of 1 续下页 Continued on next page",
    )
)


class CJKFontMissing(RuntimeError):
    """No usable CJK TrueType font: the invoice PDF cannot print Chinese text."""


def find_cjk_font(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """The CJK font file: `$INVOICELOOP_CJK_FONT` when set, else the first distribution path that exists."""
    env = os.environ if environ is None else environ
    override = env.get(CJK_FONT_ENV)
    if override:
        path = Path(override)
        if not path.is_file():
            raise CJKFontMissing(
                f"{CJK_FONT_ENV}={override!r} is not a font file; point it at a TrueType "
                "font with Chinese glyphs such as wqy-zenhei.ttc, or unset it"
            )
        return path
    for candidate in CJK_FONT_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise CJKFontMissing(
        "no Chinese font found for invoice PDFs: install the Debian package fonts-wqy-zenhei "
        f"(apt-get install fonts-wqy-zenhei) or set {CJK_FONT_ENV} to a TrueType font file "
        f"(looked in {', '.join(CJK_FONT_PATHS)})"
    )


def cjk_font() -> str:
    """The CJK font's name, registered with reportlab on the first call (parsing it takes a while).

    It is embedded as subsets of the glyphs a document uses, so any viewer shows the text."""
    if CJK_FONT_NAME not in _REGISTERED:  # reportlab's registry holds the font; this only says it is there
        pdfmetrics.registerFont(SubsetFont(CJK_FONT_NAME, str(find_cjk_font()), SHARED_TEXT))
        _REGISTERED.add(CJK_FONT_NAME)
    return CJK_FONT_NAME


_REGISTERED: set[str] = set()


def font_for(text: str) -> str:
    """Helvetica for text it can show (WinAnsi, e.g. figures, codes, `¥`), else the CJK font."""
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return cjk_font()
    return LATIN_FONT


def text_width(text: str, font: str, size: float) -> float:
    """Width of `text` in points (reportlab's `stringWidth`)."""
    return float(pdfmetrics.stringWidth(text, font, size))
