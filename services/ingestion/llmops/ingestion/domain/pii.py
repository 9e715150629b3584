"""PII redaction with typed placeholders; identifiers that carry a checksum are redacted only if it holds.

Detectors run in a fixed order and each replaces what it finds before the next one runs, so the
digits of a card, an IBAN or an identity number are gone before the phone detector, the loosest,
looks at the text. Nothing here logs or returns the matched values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

EMAIL = "EMAIL"
IBAN = "IBAN"
CREDIT_CARD = "CREDIT_CARD"
IP_ADDRESS = "IP_ADDRESS"
US_SSN = "US_SSN"
ES_DNI = "ES_DNI"
NL_BSN = "NL_BSN"
IN_AADHAAR = "IN_AADHAAR"
FR_NIR = "FR_NIR"
UK_NINO = "UK_NINO"
PHONE = "PHONE"


# --- checksums -------------------------------------------------------------------------------------


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) check over a string of digits, check digit last."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


# Lengths of the IBAN per country (ISO 13616 registry), for the countries most likely to appear.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24,
    "XK": 20,
}  # fmt: skip


def iban_valid(iban: str) -> bool:
    """ISO 13616 check of a compact, upper-case IBAN: country length, then mod 97 == 1."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    rearranged = iban[4:] + iban[:4]
    # Letters count as 10..35; int(char, 36) does exactly that for digits and letters alike.
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def es_dni_valid(value: str) -> bool:
    """Spanish DNI (8 digits + letter) or NIE (X/Y/Z + 7 digits + letter): letter = number mod 23."""
    value = value.upper()
    number = value[:-1]
    if number[0] in "XYZ":
        number = str("XYZ".index(number[0])) + number[1:]
    return number.isdigit() and _DNI_LETTERS[int(number) % 23] == value[-1]


def nl_bsn_valid(digits: str) -> bool:
    """Dutch BSN "11-proof": 9*d1 + 8*d2 + ... + 2*d8 - d9 is a multiple of 11 (and not all zeros)."""
    if len(digits) != 9 or digits == "000000000":
        return False
    total = sum((9 - index) * int(char) for index, char in enumerate(digits[:8])) - int(digits[8])
    return total % 11 == 0


_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)  # fmt: skip
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)  # fmt: skip


def verhoeff_valid(digits: str) -> bool:
    """Verhoeff check (dihedral group D5) over a string of digits, check digit last."""
    check = 0
    for index, char in enumerate(reversed(digits)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[index % 8][ord(char) - 48]]
    return check == 0


def in_aadhaar_valid(digits: str) -> bool:
    """Indian Aadhaar: 12 digits, not starting with 0 or 1, Verhoeff check digit last."""
    return len(digits) == 12 and digits[0] not in "01" and verhoeff_valid(digits)


def fr_nir_valid(value: str) -> bool:
    """French NIR (sécurité sociale): 13 characters + 2-digit key, key = 97 - (number mod 97).

    Corsican départements 2A and 2B count as 19 and 18 in the number.
    """
    body, key = value[:13].upper(), value[13:]
    body = body.replace("2A", "19", 1) if body[5:7] == "2A" else body
    body = body.replace("2B", "18", 1) if body[5:7] == "2B" else body
    if not (body.isdigit() and key.isdigit()):
        return False
    return 97 - int(body) % 97 == int(key)


def us_ssn_valid(area: str, group: str, serial: str) -> bool:
    """US SSN issuance rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


# (first prefix, last prefix, allowed lengths) per issuer, prefixes compared on their own length.
_CARD_RANGES: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("34", "34", frozenset({15})),  # American Express
    ("37", "37", frozenset({15})),
    ("6011", "6011", frozenset(range(16, 20))),  # Discover
    ("644", "649", frozenset(range(16, 20))),
    ("65", "65", frozenset(range(16, 20))),
    ("622126", "622925", frozenset(range(16, 20))),  # Discover / UnionPay co-branded
    ("62", "62", frozenset(range(16, 20))),  # UnionPay
    ("3528", "3589", frozenset(range(16, 20))),  # JCB
    ("300", "305", frozenset(range(14, 20))),  # Diners Club
    ("36", "36", frozenset(range(14, 20))),
    ("38", "39", frozenset(range(16, 20))),
    ("2200", "2204", frozenset(range(16, 20))),  # Mir
    ("5018", "5018", frozenset(range(13, 20))),  # Maestro
    ("5020", "5020", frozenset(range(13, 20))),
    ("5038", "5038", frozenset(range(13, 20))),
    ("5893", "5893", frozenset(range(13, 20))),
    ("6304", "6304", frozenset(range(13, 20))),
    ("6759", "6759", frozenset(range(13, 20))),
    ("6761", "6763", frozenset(range(13, 20))),
)


def card_issuer_known(digits: str) -> bool:
    """Whether the number starts with a known issuer prefix (IIN) that issues cards of its length."""
    for low, high, lengths in _CARD_RANGES:
        if len(digits) in lengths and low <= digits[: len(low)] <= high:
            return True
    return False


def card_valid(digits: str) -> bool:
    """A payment card number: 13-19 digits, a known issuer prefix for that length, and Luhn."""
    return 13 <= len(digits) <= 19 and luhn_valid(digits) and card_issuer_known(digits)


# --- detectors -------------------------------------------------------------------------------------


Span = tuple[int, int]


@dataclass(frozen=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    # Decides on one match: the spans of it (offsets within the match) to replace, often none.
    spans: Callable[[re.Match[str]], list[Span]]


def _whole_if(check: Callable[[re.Match[str]], bool]) -> Callable[[re.Match[str]], list[Span]]:
    def spans(match: re.Match[str]) -> list[Span]:
        return [(0, match.end() - match.start())] if check(match) else []

    return spans


def _only_digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _compact(match: re.Match[str]) -> str:
    return re.sub(r"[\s.-]", "", match.group(0))


_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{2,59})(?![\w-])",
    re.I,
)
# Country, check digits, then the BBAN, compact or in groups of four; the exact length is enforced
# per country afterwards, because a greedy pattern may swallow a following short upper-case word.
_IBAN = re.compile(r"(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?!\w)")
# A whole run of digit groups; the card (if any) is searched for inside it along group boundaries,
# so a card followed by another number ("4111 1111 1111 1111 2024") is still found.
_DIGIT_GROUPS = re.compile(r"(?<![\w.,+])\d+(?:[ -]\d+)*(?!\w|[.,]\d)")
_GROUP = re.compile(r"\d+")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_VERSION_CONTEXT = re.compile(r"(?:\bversion|\bver\.?|\bv\.?|\brelease|\bbuild)\s*$", re.I)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![\w:]|\.\d)"
)
_SSN = re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?!\w|-\d)")
_DNI = re.compile(r"(?<![\w-])(?:\d{8}|[XYZ]-?\d{7})-?[A-Z](?![\w-])")
_BSN = re.compile(r"(?<![\w.,-])(?:\d{9}|\d{4}\.\d{2}\.\d{3}|\d{3}\.\d{3}\.\d{3})(?!\w|[.,-]\d)")
_AADHAAR = re.compile(r"(?<![\w.,-])[2-9]\d{3}([ -]?)\d{4}\1\d{4}(?!\w|[.,-]\d)")
# Sex, year, month (or 20-99 for unknown months), département (2A/2B: Corsica), commune, order, key.
_NIR = re.compile(
    r"(?<![\w.,-])[1278] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}"
    r"(?!\w|[.,-]\d)"
)
# First letter not D F I Q U V; second not D F I O Q U V; suffix A-D; some prefixes never issued.
_NINO = re.compile(
    r"(?<![\w-])(?!BG|GB|NK|KN|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![\w-])"
)
# A run of digit groups that may hold phone numbers; which part of it is one is decided per window
# of whole groups (see _group_windows), so that a number next to a year or to another number is
# neither missed nor merged with it.
_PHONE_RUN = re.compile(
    # A run starts at its first group (never after "123 ": the windows look inside the whole run),
    # and not after "DE89 ": the rest of an IBAN that failed its checksum is no phone.
    r"(?<![\w.,/:+-])(?<!\d )(?<![A-Z]{2}\d{2} )"
    # Digit groups need a separator between them (an optional one would let the engine split a long
    # digit run in exponentially many ways); only after "(0)" may digits follow directly.
    r"\+?(?:\(\d{1,5}\)|\d+)(?:[ ./-]?\(\d{1,5}\)|[ ./-]\d+|(?<=\))\d+)*(?!\w|[.,/:-]\d)"
)
_PHONE_GROUP = re.compile(r"\+?\d+|\(\d+\)")
# +CC, an optional (area) or (0), then groups: +44 20 7946 0958, +1 (555) 123-4567, +33 1 23 45 67 89.
_PHONE_INTERNATIONAL = re.compile(r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){1,6}")
# North American 3-3-4 with separators, optionally after a 1 country prefix.
_PHONE_NANP = re.compile(r"(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}")
# National numbers with a trunk 0 and consistent separators after the area code: 020 7946 0958,
# 01 23 45 67 89, (030) 1234567, 030/123 4567.
_PHONE_TRUNK = re.compile(r"(?:\(0\d{1,4}\) ?|0\d{1,4}[ ./-]?)\d{2,4}(?:([ .-]?)\d{2,4}(?:\1\d{2,4}){0,2})?")
_DATE_LIKE = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{1,4}")


def _iban_spans(match: re.Match[str]) -> list[Span]:
    text = match.group(0)
    expected = IBAN_LENGTHS.get(text[:2])
    if expected is None:
        return []
    # Take exactly the country's length of characters; the rest (if any) must start at a space,
    # i.e. be a separate word the pattern swallowed.
    seen = 0
    end = 0
    while end < len(text) and seen < expected:
        seen += text[end] != " "
        end += 1
    if seen != expected or (end < len(text) and text[end] != " "):
        return []
    return [(0, end)] if iban_valid(text[:end].replace(" ", "")) else []


def _group_windows(
    text: str, groups: list[Span], valid: Callable[[str, int], bool], min_digits: int, max_digits: int
) -> list[Span]:
    """Spans of ``text`` made of consecutive groups that pass ``valid``, longest first, left to right.

    ``valid`` gets the window's text and its number of digits, which is within the given bounds.

    A window may start or end inside the run only where groups are separated by a space: "12-4111..."
    is one token, "555 4111 ..." two.
    """
    spans: list[Span] = []
    first = 0
    while first < len(groups):
        if first and text[groups[first][0] - 1] != " ":
            first += 1
            continue
        found = None
        digits = 0
        for last in range(first, len(groups)):
            start, end = groups[last]
            digits += sum(char.isdigit() for char in text[start:end])
            if digits > max_digits:
                break
            if (
                digits >= min_digits
                and (last + 1 == len(groups) or text[end] == " ")
                and valid(text[groups[first][0] : end], digits)
            ):
                found = last
        if found is None:
            first += 1
        else:
            spans.append((groups[first][0], groups[found][1]))
            first = found + 1
    return spans


def _card_spans(match: re.Match[str]) -> list[Span]:
    text = match.group(0)
    groups = [group.span() for group in _GROUP.finditer(text)]
    return _group_windows(text, groups, lambda window, _: card_valid(_only_digits(window)), 13, 19)


def _phone_valid(window: str, digits: int) -> bool:
    # Cheap tests on the first character and the digit count first: long runs of numbers (tables)
    # have many windows, and most of them fail here without running a pattern.
    if window[0] == "+":
        return digits >= 8 and bool(_PHONE_INTERNATIONAL.fullmatch(window))
    if digits in (10, 11) and _PHONE_NANP.fullmatch(window):
        return True
    if window[0] == "0" or window.startswith("(0"):
        # Unformatted runs of digits are too often something else (order numbers, amounts).
        return (
            9 <= digits <= 12
            and not window.isdigit()
            and not _DATE_LIKE.fullmatch(window)
            and bool(_PHONE_TRUNK.fullmatch(window))
        )
    return False


def _phone_spans(match: re.Match[str]) -> list[Span]:
    text = match.group(0)
    groups = [group.span() for group in _PHONE_GROUP.finditer(text)]
    return _group_windows(text, groups, _phone_valid, 7, 15)


def _ipv4_valid(match: re.Match[str]) -> bool:
    # "version 1.2.3.4" names a release, not a host.
    if _VERSION_CONTEXT.search(match.string, max(0, match.start() - 12), match.start()):
        return False
    try:
        ipaddress.IPv4Address(match.group(0))
    except ValueError:
        return False
    return True


def _ipv6_valid(match: re.Match[str]) -> bool:
    candidate = match.group(0)
    groups = [group for group in candidate.split(":") if group]
    # Slices and scopes in code (a[1::2], x::y) parse as IPv6 too; a real address has a group of
    # three or more hex digits (fe80::1, ::ffff:...) or at least four groups.
    if not any(len(group) >= 3 for group in groups) and len(groups) < 4:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


_DETECTORS: tuple[_Detector, ...] = (
    _Detector(EMAIL, _EMAIL, _whole_if(lambda match: True)),
    _Detector(IBAN, _IBAN, _iban_spans),
    _Detector(CREDIT_CARD, _DIGIT_GROUPS, _card_spans),
    _Detector(IP_ADDRESS, _IPV6, _whole_if(_ipv6_valid)),
    _Detector(IP_ADDRESS, _IPV4, _whole_if(_ipv4_valid)),
    _Detector(FR_NIR, _NIR, _whole_if(lambda match: fr_nir_valid(_compact(match)))),
    _Detector(IN_AADHAAR, _AADHAAR, _whole_if(lambda match: in_aadhaar_valid(_only_digits(match.group(0))))),
    _Detector(US_SSN, _SSN, _whole_if(lambda match: us_ssn_valid(match[1], match[3], match[4]))),
    _Detector(NL_BSN, _BSN, _whole_if(lambda match: nl_bsn_valid(_only_digits(match.group(0))))),
    _Detector(ES_DNI, _DNI, _whole_if(lambda match: es_dni_valid(_compact(match)))),
    _Detector(UK_NINO, _NINO, _whole_if(lambda match: True)),
    _Detector(PHONE, _PHONE_RUN, _phone_spans),
)

PII_TYPES: tuple[str, ...] = tuple(dict.fromkeys(detector.kind for detector in _DETECTORS))


def redact_pii(text: str) -> tuple[str, dict[str, int]]:
    """Replace personal data with typed placeholders such as ``[EMAIL]`` or ``[CREDIT_CARD]``.

    Returns:
        The redacted text and the number of replacements per type; types not found are absent.
    """
    counts: dict[str, int] = {}
    for detector in _DETECTORS:
        placeholder = f"[{detector.kind}]"
        found = 0

        def replace(
            match: re.Match[str], detector: _Detector = detector, placeholder: str = placeholder
        ) -> str:
            nonlocal found
            spans = detector.spans(match)
            if not spans:
                return match.group(0)
            found += len(spans)
            original = match.group(0)
            pieces: list[str] = []
            cursor = 0
            for start, end in spans:
                pieces += (original[cursor:start], placeholder)
                cursor = end
            pieces.append(original[cursor:])
            return "".join(pieces)

        text = detector.pattern.sub(replace, text)
        if found:
            counts[detector.kind] = counts.get(detector.kind, 0) + found
    return text, counts
