"""Personal data found and redacted with typed placeholders, per kind (see PII_TYPES).

The kernel's one set of detectors: ingestion redacts documents with it, and prompts, completions and
feedback are redacted with it before they leave the process that received them. Which kinds are
redacted is configurable (``redact_pii(text, kinds)``, ``PiiSettings``).

Identifiers that carry a checksum are taken only if it holds. Detectors run in a fixed order and each
masks what it finds before the next one runs, so the digits of a card, an IBAN or an identity number
are gone before the phone detector, the loosest, looks at the text; a value with an identifier's
shape whose checksum fails is masked as well, though not reported. The look-alikes real documents are
full of (ZIP+4 codes, regulation clauses, release and section numbers, OIDs, translation files named
like addresses) are told apart by their context; ``tests/bench/pii.py`` measures precision and recall
per kind on labelled snippets of real documents. Nothing here logs the matched values.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
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


# --- context ---------------------------------------------------------------------------------------
# Look-alikes are told apart by the words around them: "Boston, MA 02110-1301" is a postal code,
# "DFARS 252.227-7013" a clause, "dpkg (1.15.8.3)" a release, "located at gnu.org" no address.

# US states, DC and territories: a 5+4 number after one of them is a ZIP+4 code.
_US_STATES = (
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY "
    "NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR GU VI AS MP"
).split()
_US_STATE_NAMES = (
    "Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|"
    "Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|"
    "Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|"
    "New York|North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|"
    "South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|"
    "Wisconsin|Wyoming|Puerto Rico|District of Columbia"
)
# Between the state and the code: spaces, a comma, or a line break with a comment marker.
_STATE_BEFORE = re.compile(rf"(?:\b(?:{'|'.join(_US_STATES)})\.?|\b(?:{_US_STATE_NAMES}))[\s,*#;]*$")
_ZIP4 = re.compile(r"\d{5}-\d{4}")
# Numbers that a reference, not a person, is written with: regulation clauses (DFARS 252.227-7013,
# FAR 52.227-19, 48 CFR 2.101, 15 U.S.C. § 78), book and standard numbers, releases.
_REFERENCE_BEFORE = re.compile(
    r"(?:\b(?:DFARS?|FAR|DEARS?|NFS|CFR|C\.F\.R\.?|U\.S\.C\.?|USC|[Cc]lauses?|[Ss]ections?|[Ss]ec\.|"
    r"[Ss]ubparagraphs?|[Pp]aragraphs?|[Aa]rticles?|[Cc]hapters?|[Aa]ppendix|[Tt]ables?|[Ff]igures?|"
    r"ISBN(?:-1[03])?:?|ISSN:?|RFC|[Pp]atents?(?: [Nn]o\.?)?|[Vv]ersions?|[Rr]eleases?|[Bb]uild|[Bb]ug|"
    r"[Ii]ssue|[Tt]ests?:?|OID|[Ss]erial(?: [Nn]o\.?)?)|§§?)\s*$"
)
_PHONE_BEFORE = re.compile(
    r"(?i)(?:\b(?:tel|tél|phone|telephone|telefon|fax|mobile|cell|call|voice|ph)\b\.?:?|☎|📞)\s*$"
)
# Words that say a dotted quad is a network address, for quads that also read as releases (see
# _ipv4_valid).
_NETWORK_WORDS = re.compile(
    r"(?i)\b(?:ip|ipv4|ips|inet|addr|address(?:es)?|hosts?|hostname|servers?|dns|nameservers?|resolvers?|"
    r"gateway|router|ping|connect\w*|bind|listen\w*|proxy|subnets?|network|netmask|routes?|peers?|"
    r"clients?|firewall|interface|localhost|ssh|https?|tcp|udp|cidr)\b"
)
_VERSION_BEFORE = re.compile(
    r"(?i)(?:\bversions?|\bver\.?|\bv\.?|\breleases?d?|\brel\.|\bbuild|\bbump(?:ed)?(?: \w+)? to|"
    r"\bupdated?(?: \w+)? to|\bupgraded?(?: \w+)? to|\bchanges in|standards-version:?(?: to| is)?|"
    r"\bsections?|\bsec\.|§|\bclauses?|\bchapters?|\bappendix|\btables?|\bfigures?|\bsteps?|\boid|"
    r"\brfc\s*\d*(?: in)?)\s*$"
)


def _before(text: str, start: int, width: int = 40) -> str:
    return text[max(0, start - width) : start]


# --- detectors -------------------------------------------------------------------------------------


Span = tuple[int, int]


@dataclass(frozen=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    # Decides on one match: the spans of it (offsets within the match) to take, often none.
    spans: Callable[[re.Match[str]], list[Span]]
    # A cheap test that the pattern can match at all; most text skips the costlier patterns.
    may_match: Callable[[str], bool] = lambda text: True
    # Spans that have this kind's shape but fail its checksum: not reported, but masked all the same,
    # so that a mistyped IBAN, card or NIR does not come back in pieces as a phone or an Aadhaar.
    claims: Callable[[re.Match[str]], list[Span]] | None = None


def _whole_if(check: Callable[[re.Match[str]], bool]) -> Callable[[re.Match[str]], list[Span]]:
    def spans(match: re.Match[str]) -> list[Span]:
        return [(0, match.end() - match.start())] if check(match) else []

    return spans


def _only_digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _compact(match: re.Match[str]) -> str:
    return re.sub(r"[\s.-]", "", match.group(0))


def _in_number_table(match: re.Match[str]) -> bool:
    """Whether digit groups sit right before and right after the match: a row of numbers, not an id."""
    text = match.string
    return bool(re.search(r"\d[ -]$", _before(text, match.start(), 2))) and bool(
        re.match(r"[ -]\d", text[match.end() : match.end() + 2])
    )


_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]+@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+(?:[^\W\d_]{2,63}|xn--[a-z0-9-]{2,59})(?![\w-])",
    re.I,
)
# Last labels that name a file, not a domain: "po/sr@latin.po", "pg_basebackup@main.service",
# ".../csmall@debian.org.html" (the address inside a URL is kept, the suffix is not).
_FILE_SUFFIXES = frozenset(
    "po pot gmo header html htm php txt rst json xml yaml yml cfg conf ini log css service socket timer "
    "mount slice scope swap automount".split()
)
# Message-IDs and other generated ids have an address's shape: a timestamp or UUID as local part.
_GENERATED_LOCAL = re.compile(
    r"\d{8,}[.\-_]\S*|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I
)
# Addresses written to dodge harvesters: "lennart (at) poettering (dot) de", "shooby at gnome dot hu",
# "<rootkea at gmail.com>", "*mkoenig [at] suse.de*".
_AT = r"(?:[ \t]*[(\[{<][ \t]*at[ \t]*[)\]}>][ \t]*|[ \t]+at[ \t]+|[ \t]+AT[ \t]+)"
_DOT = r"(?:[ \t]*[(\[{<][ \t]*dot[ \t]*[)\]}>][ \t]*|[ \t]+dot[ \t]+|[ \t]+DOT[ \t]+|\.)"
# The parts are bounded so that a long run of "x dot x dot ..." costs linear time, not quadratic.
_EMAIL_SPELLED = re.compile(
    rf"(?<![\w.+-])[A-Za-z0-9][\w+-]{{0,63}}(?:{_DOT}[\w+-]{{1,63}}){{0,4}}{_AT}"
    rf"[A-Za-z0-9][\w-]{{0,62}}(?:{_DOT}[A-Za-z0-9][\w-]{{0,62}}){{0,6}}{_DOT}[A-Za-z]{{2,24}}(?![\w-]|\.\w)"
)
_SPELLED_AT = re.compile(r"[ \t(\[{<](?:at|AT)[ \t)\]}>]")
_ENCLOSED = {"<": ">", "(": ")", "[": "]", "*": "*", '"': '"', "'": "'"}


def _email_spans(match: re.Match[str]) -> list[Span]:
    value = match.group(0)
    local, domain = value.rsplit("@", 1)
    if _GENERATED_LOCAL.fullmatch(local):
        return []
    # user@host:path is a login in an scp/git URL (git@github.com:owner/repo).
    if re.match(r":[\w~/]", match.string[match.end() : match.end() + 2]):
        return []
    head, _, suffix = domain.rpartition(".")
    if suffix.lower() in _FILE_SUFFIXES:
        return [(0, len(local) + 1 + len(head))] if "." in head else []
    return [(0, len(value))]


def _email_spelled_valid(match: re.Match[str]) -> bool:
    value = match.group(0)
    if value.rpartition(".")[2].lower() in _FILE_SUFFIXES:
        return False  # "Veillard at bugs.html"
    if re.search(r"(?i)[(\[{<][ \t]*(?:at|dot)[ \t]*[)\]}>]|[ \t]dot[ \t]", value):
        return True  # spelled out on purpose: nothing else looks like this
    # "user at host.org" reads like prose ("located at gnu.org", "point at salsa.debian.org") unless
    # it stands apart: in <...>, (...), [...] or *...* as in author lists, or in a column of its own
    # as in THANKS files; or unless it follows "from"/"by" ("Patch from vapier at chromium.org") or
    # its user part is no word ("peder.stray", "k-yosino").
    text, start, end = match.string, match.start(), match.end()
    closing = _ENCLOSED.get(text[start - 1 : start] if start else "")
    if closing is not None and text[end : end + 1] == closing:
        return True
    if re.search(r"(?:\t| {2,})$", _before(text, start, 2)) and re.match(
        r"[ \t]*(?:\n|$)|\t| {2,}", text[end : end + 2]
    ):
        return True
    if re.search(r"(?i)(?:\b(?:from|by)\s+(?:user\s+)?|mailto:)$", _before(text, start, 20)):
        return True
    return bool(re.search(r"[._+\d-]", re.split(_AT, value, maxsplit=1)[0]))


# Country, check digits, then the BBAN, compact or in groups of four; the exact length is enforced
# per country afterwards, because a greedy pattern may swallow a following short upper-case word.
_IBAN = re.compile(r"(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?!\w)")
# Patterns that start with a digit say so first ("(?=\d)"), so the engine skips most positions without
# trying their look-behinds.
# A whole run of digit groups; the card (if any) is searched for inside it along group boundaries,
# so a card followed by another number ("4111 1111 1111 1111 2024") is still found.
_DIGIT_GROUPS = re.compile(r"(?=\d)(?<![\w.,+])\d+(?:[ -]\d+)*(?!\w|[.,]\d)")
_GROUP = re.compile(r"\d+")
# How card numbers are printed: compact, in fours (the last group shorter for 13 and 19 digits),
# or 4-6-5 / 4-6-4 (American Express, Diners Club).
_CARD_LAYOUT = re.compile(r"\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,4})?|\d{4}[ -]\d{6}[ -]\d{4,5}")
_IPV4 = re.compile(r"(?=\d)(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|\d{1,3}(?:\.\d{1,3}){3})?(?![\w:]|\.\d)"
)
_SSN = re.compile(r"(?=\d)(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?!\w|-\d)")
_DNI = re.compile(r"(?=[\dXYZ])(?<![\w-])(?:\d{8}|[XYZ]-?\d{7})-?[A-Z](?![\w-])")
_BSN = re.compile(r"(?=\d)(?<![\w.,-])(?:\d{9}|\d{4}\.\d{2}\.\d{3}|\d{3}\.\d{3}\.\d{3})(?!\w|[.,-]\d)")
# One nine-digit number in eleven passes the 11-proof: test ids, bug numbers, constants. A BSN is
# written next to its name.
_BSN_BEFORE = re.compile(r"(?i)\b(?:bsn|burgerservicenummer|sofi(?:-?nummer)?|citizen service number)\b")
_AADHAAR = re.compile(r"(?=\d)(?<![\w.,-])[2-9]\d{3}([ -]?)\d{4}\1\d{4}(?!\w|[.,-]\d)")
# Sex, year, month (or 20-99 for unknown months), département (2A/2B: Corsica), commune, order, key.
_NIR = re.compile(
    r"(?=\d)(?<![\w.,-])[1278] ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}"
    r"(?!\w|[.,-]\d)"
)
# First letter not D F I Q U V; second not D F I O Q U V; suffix A-D; some prefixes never issued.
_NINO = re.compile(
    r"(?<![\w-])(?!BG|GB|NK|KN|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![\w-])"
)
# A run of digit groups that may hold phone numbers; which part of it is one is decided per window
# of whole groups (see _group_windows), so that a number next to a year or to another number is
# neither missed nor merged with it. Groups are separated by one of " -./", by " - " or " / ", or by
# two spaces (+45 - 31226543, +420/68/5391545, +27 83  2797047).
_PHONE_RUN = re.compile(
    # A run starts at its first group (never after "123 ": the windows look inside the whole run),
    # and not after "DE89 ": the rest of an IBAN that failed its checksum is no phone.
    r"(?=[+(\d])(?:(?<=tel:)|(?<![\w.,/:+~=-])(?<!\d )(?<![A-Z]{2}\d{2} ))"
    # Digit groups need a separator between them (an optional one would let the engine split a long
    # digit run in exponentially many ways); only after "(0)" may digits follow directly.
    r"(?:\+?\d+|\(\+?\d{1,5}\))(?:(?: [-/] | {1,2}|[./-])(?:\(\d{1,5}\)|\d+)|(?<=\))\d+)*(?!\w|[.,/:-]\d)"
)
_PHONE_GROUP = re.compile(r"\+?\d+|\(\+?\d+\)")
_SEP = r"(?: ?[-./] ?| {1,2})"
# +CC or (+CC), an optional (0) or (area), then groups: +44 20 7946 0958, +1 (555) 123-4567, +41 - (0)1772
# 724325, +420/68/5391545, +4915112345678.
_PHONE_INTERNATIONAL = re.compile(
    rf"(?:\+\d{{1,3}}|\(\+\d{{1,3}}\))(?:{_SEP}?\(\d{{1,4}}\))?{_SEP}?\d{{1,10}}(?:{_SEP}\d{{1,10}}){{0,5}}"
)
# North American 3-3-4, optionally after a 1: (555) 123-4567, 555-123-4567, 555.123.4567. The same
# separator both times: "252.227-7013" is a clause number. Spaces alone only after a phone word.
_PHONE_NANP = re.compile(r"(?:1[ .-])?(?:\(\d{3}\) ?\d{3}[ .-]|\d{3}([.-])\d{3}\1)\d{4}")
_PHONE_NANP_SPACED = re.compile(r"(?:1 )?\d{3} \d{3} \d{4}")
# National numbers with a trunk 0 (then an area code, never 0: "00 00 00" is a hex dump) and
# consistent separators after the area code: 020 7946 0958, 01 23 45 67 89, (030) 1234567.
_PHONE_TRUNK = re.compile(
    r"(?:\(0[1-9]\d{0,3}\) ?|0[1-9]\d{0,3}[ ./-]?)\d{2,4}(?:([ .-]?)\d{2,4}(?:\1\d{2,4}){0,2})?"
)
_DATE_LIKE = re.compile(r"(\d{1,4})([./-])(\d{1,2})\2(\d{1,4})")


def _is_date(window: str) -> bool:
    """Whether ``window`` reads as a date: 2024-01-15, 15.01.2024, 01/15/24 (but not 0800-89-1131)."""
    match = _DATE_LIKE.fullmatch(window)
    if match is None:
        return False
    first, middle, last = match[1], int(match[3]), match[4]
    if len(first) == 4:
        return 1 <= middle <= 12 and 1 <= int(last) <= 31
    return len(last) in (2, 4) and (
        (1 <= middle <= 12 and 1 <= int(first) <= 31) or (1 <= int(first) <= 12 and 1 <= middle <= 31)
    )


def _iban_spans(match: re.Match[str], *, checked: bool = True) -> list[Span]:
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
    return [(0, end)] if not checked or iban_valid(text[:end].replace(" ", "")) else []


def _iban_shapes(match: re.Match[str]) -> list[Span]:
    return _iban_spans(match, checked=False)


def _group_windows(
    text: str, groups: list[Span], valid: Callable[[Span, int, bool], bool], min_digits: int, max_digits: int
) -> list[Span]:
    """Spans of ``text`` made of consecutive groups that pass ``valid``, longest first, left to right.

    ``valid`` gets the window's span, its number of digits (within the given bounds) and whether
    other groups of the run sit on both sides of it.

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
                and valid((groups[first][0], end), digits, 0 < first and last + 1 < len(groups))
            ):
                found = last
        if found is None:
            first += 1
        else:
            spans.append((groups[first][0], groups[found][1]))
            first = found + 1
    return spans


def _card_spans(match: re.Match[str], *, checked: bool = True) -> list[Span]:
    text = match.group(0)
    if len(text) < 13:
        return []  # most runs are a year or a count

    def valid(span: Span, _digits: int, inside: bool) -> bool:
        # Between other numbers on both sides it is a row of a table ("3208 3848 4488 5128 5768").
        window = text[span[0] : span[1]]
        if inside or not _CARD_LAYOUT.fullmatch(window):
            return False
        digits = _only_digits(window)
        return card_valid(digits) if checked else card_issuer_known(digits)

    groups = [group.span() for group in _GROUP.finditer(text)]
    return _group_windows(text, groups, valid, 13, 19)


def _card_shapes(match: re.Match[str]) -> list[Span]:
    return _card_spans(match, checked=False)


def _nir_shapes(match: re.Match[str]) -> list[Span]:
    # The spaced layout also fits inside rows of numbers, which are no NIR.
    return [] if _in_number_table(match) else [(0, match.end() - match.start())]


def _phone_shape(window: str, digits: int) -> str | None:
    """Which phone layout ``window`` has: "international", "nanp", "trunk", "spaced" or None."""
    # Cheap tests on the first character and the digit count first: long runs of numbers (tables)
    # have many windows, and most of them fail here without running a pattern.
    if window[0] == "+" or window.startswith("(+"):
        if digits >= 8 and _PHONE_INTERNATIONAL.fullmatch(window):
            # "+45 - 0000000" stands for no number.
            return "international" if _only_digits(window)[3:].strip("0") else None
        return None
    if digits in (10, 11):
        if _PHONE_NANP.fullmatch(window):
            return "nanp"
        if _PHONE_NANP_SPACED.fullmatch(window):
            return "spaced"
    if window[0] == "0" or window.startswith("(0"):
        # Unformatted runs of digits are too often something else (order numbers, amounts).
        if (
            9 <= digits <= 12
            and not window.isdigit()
            and not _is_date(window)
            and _PHONE_TRUNK.fullmatch(window)
        ):
            return "trunk"
    return None


def _phone_spans(match: re.Match[str]) -> list[Span]:
    text = match.group(0)
    if len(text) < 7:
        return []  # most runs are a year or a count
    groups = [group.span() for group in _PHONE_GROUP.finditer(text)]
    whole = match.string

    def valid(span: Span, digits: int, _inside: bool) -> bool:
        window = text[span[0] : span[1]]
        shape = _phone_shape(window, digits)
        if shape is None:
            return False
        before = _before(whole, match.start() + span[0])
        # "+CC ..." is never a reference ("bug +44 20 7946 0958" is a phone after all).
        if shape != "international" and _REFERENCE_BEFORE.search(before):
            return False
        if shape == "spaced":
            return bool(_PHONE_BEFORE.search(before))
        return not (_ZIP4.fullmatch(window) and _STATE_BEFORE.search(before))

    return _group_windows(text, groups, valid, 7, 15)


def _is_netmask(address: ipaddress.IPv4Address) -> bool:
    # 255.255.255.0 and kin: ones, then zeros.
    bits = int(address)
    inverted = ~bits & 0xFFFFFFFF
    return bits >> 24 == 255 and inverted & (inverted + 1) == 0


def _ipv4_valid(match: re.Match[str]) -> bool:
    try:
        address = ipaddress.IPv4Address(match.group(0))
    except ValueError:
        return False
    if _is_netmask(address):
        return False
    text, start, end = match.string, match.start(), match.end()
    before = _before(text, start)
    after = text[end : end + 24]
    # Releases and section numbers: "version 1.2.3.4", "Section 2.5.5.2", "gettext-0.19.8.1",
    # epoch "2:1.2.99.4", Debian revision "1.0.24.2-5", "1.2.3.4+dfsg", "1.2.3.4~rc1".
    if _VERSION_BEFORE.search(before) or re.search(r"[A-Za-z][\w.+]*[-_]$|(?<![\w:])\d+:$", before):
        return False
    if re.match(r"-(?!\d{1,3}(?:\.\d{1,3}){3})\w|[+~]\w", after):
        return False
    if int(address) >> 24 >= 10 or int(address) == 0:
        return True
    # 1.4.1.19 or 3.6.23.1 reads as a release as often as as a host (1.1.1.1, 8.8.8.8): such a quad
    # counts only where something says network: a word on its line, a port or prefix length, a URL
    # or login before it, or another address near it.
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line = text[max(line_start, start - 60) : (line_end if line_end != -1 else len(text))][
        : end - start + 120
    ]
    if _NETWORK_WORDS.search(line):
        return True
    if re.match(r":\d{1,5}\b|/\d{1,2}\b", after) or re.search(r"(?://|@)$", before):
        return True
    nearby = text[max(0, start - 80) : end + 80]
    return any(
        other.group(0) != match.group(0) and _ipv4_plain(other.group(0)) for other in _IPV4.finditer(nearby)
    )


def _ipv4_plain(value: str) -> bool:
    """A quad that reads as nothing but an address: valid, first octet 10 or more, no netmask."""
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return int(address) >> 24 >= 10 and not _is_netmask(address)


def _ipv6_valid(match: re.Match[str]) -> bool:
    candidate = match.group(0)
    groups = [group for group in candidate.split(":") if group]
    # Slices and scopes in code (a[1::2], x::y) parse as IPv6 too; a real address has a group of
    # three or more hex digits (fe80::1, ::ffff:...) or at least four groups.
    if not any(len(group) >= 3 for group in groups) and len(groups) < 4:
        return False
    # "Oct 15 2000::" is a year before a reST marker: one group of decimal digits needs a prefix
    # length after it (2002::/16) to be a network.
    if len(groups) == 1 and groups[0].isdigit() and not match.string.startswith("/", match.end()):
        return False
    try:
        address = ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    # A netmask (ffff:ffff:ffff:ffff::) is no address.
    inverted = ~int(address) & (2**128 - 1)
    return not (int(address) >> 112 == 0xFFFF and inverted & (inverted + 1) == 0)


def _bsn_valid(match: re.Match[str]) -> bool:
    return bool(_BSN_BEFORE.search(_before(match.string, match.start()))) and nl_bsn_valid(
        _only_digits(match.group(0))
    )


def _aadhaar_valid(match: re.Match[str]) -> bool:
    return not _in_number_table(match) and in_aadhaar_valid(_only_digits(match.group(0)))


_DETECTORS: tuple[_Detector, ...] = (
    _Detector(EMAIL, _EMAIL, _email_spans, lambda text: "@" in text),
    _Detector(EMAIL, _EMAIL_SPELLED, _whole_if(_email_spelled_valid), _SPELLED_AT.search),
    _Detector(IBAN, _IBAN, _iban_spans, claims=_iban_shapes),
    _Detector(CREDIT_CARD, _DIGIT_GROUPS, _card_spans, claims=_card_shapes),
    _Detector(IP_ADDRESS, _IPV6, _whole_if(_ipv6_valid)),
    _Detector(IP_ADDRESS, _IPV4, _whole_if(_ipv4_valid)),
    _Detector(FR_NIR, _NIR, _whole_if(lambda match: fr_nir_valid(_compact(match))), claims=_nir_shapes),
    _Detector(IN_AADHAAR, _AADHAAR, _whole_if(_aadhaar_valid)),
    _Detector(US_SSN, _SSN, _whole_if(lambda match: us_ssn_valid(match[1], match[3], match[4]))),
    _Detector(NL_BSN, _BSN, _whole_if(_bsn_valid)),
    _Detector(ES_DNI, _DNI, _whole_if(lambda match: es_dni_valid(_compact(match)))),
    _Detector(UK_NINO, _NINO, _whole_if(lambda match: True)),
    _Detector(PHONE, _PHONE_RUN, _phone_spans),
)

PII_TYPES: tuple[str, ...] = tuple(dict.fromkeys(detector.kind for detector in _DETECTORS))


def pii_kinds(kinds: Iterable[str] | None) -> frozenset[str]:
    """The kinds to look for: ``kinds`` checked against :data:`PII_TYPES` (None: all of them).

    Raises:
        ValueError: naming the kinds that are not in PII_TYPES.
    """
    if kinds is None:
        return frozenset(PII_TYPES)
    chosen = frozenset(kinds) if not isinstance(kinds, str) else frozenset((kinds,))
    unknown = sorted(chosen - set(PII_TYPES))
    if unknown:
        raise ValueError(f"unknown PII kind(s) {', '.join(unknown)}; known: {', '.join(PII_TYPES)}")
    return chosen


@dataclass(frozen=True)
class PiiSpan:
    """One piece of personal data found: its kind and where it is (``text[start:end]``)."""

    kind: str
    start: int
    end: int


def _mask(text: str, spans: list[Span]) -> str:
    """``text`` with ``spans`` (overlapping or not) masked.

    The mask keeps offsets and, like a placeholder, reads as a bracketed word to later patterns.
    """
    pieces: list[str] = []
    cursor = 0
    for start, end in sorted(spans):
        start = max(start, cursor)
        if end <= start:
            continue
        pieces += (text[cursor:start], "[" + "_" * (end - start - 2) + "]" if end - start > 1 else "_")
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def find_pii(text: str, kinds: Iterable[str] | None = None) -> list[PiiSpan]:
    """Where the personal data of the given kinds (None: all, see :data:`PII_TYPES`) is, in order.

    Every detector up to the last one asked for runs, in the fixed order, and what one finds is
    masked before the next looks, so a card's digits never come back as a phone even when only
    phones are asked for.

    Raises:
        ValueError: ``kinds`` names a kind not in PII_TYPES.
    """
    chosen = pii_kinds(kinds)
    last = (
        max(index for index, detector in enumerate(_DETECTORS) if detector.kind in chosen) if chosen else -1
    )
    found: list[PiiSpan] = []
    for detector in _DETECTORS[: last + 1]:
        if not detector.may_match(text):
            continue
        spans: list[Span] = []
        masked: list[Span] = []
        for match in detector.pattern.finditer(text):
            spans += ((match.start() + start, match.start() + end) for start, end in detector.spans(match))
            if detector.claims is not None:
                masked += (
                    (match.start() + start, match.start() + end) for start, end in detector.claims(match)
                )
        if spans or masked:
            text = _mask(text, spans + masked)
        if detector.kind in chosen:
            found += (PiiSpan(detector.kind, start, end) for start, end in spans)
    found.sort(key=lambda span: span.start)
    return found


def redact_pii(text: str, kinds: Iterable[str] | None = None) -> tuple[str, dict[str, int]]:
    """Replace personal data with typed placeholders such as ``[EMAIL]`` or ``[CREDIT_CARD]``.

    Args:
        text: the text to redact.
        kinds: the kinds to redact (None: all of :data:`PII_TYPES`); other kinds are left as they are.

    Returns:
        The redacted text and the number of replacements per type; types not found are absent.

    Raises:
        ValueError: ``kinds`` names a kind not in PII_TYPES.
    """
    spans = find_pii(text, kinds)
    if not spans:
        return text, {}
    counts: dict[str, int] = {}
    pieces: list[str] = []
    cursor = 0
    for span in spans:
        pieces += (text[cursor : span.start], f"[{span.kind}]")
        cursor = span.end
        counts[span.kind] = counts.get(span.kind, 0) + 1
    pieces.append(text[cursor:])
    # Counts in the order of PII_TYPES, as before.
    return "".join(pieces), {kind: counts[kind] for kind in PII_TYPES if kind in counts}


@dataclass(frozen=True)
class Redactor:
    """What a service applies to text people typed (prompts, completions, feedback, queries) before
    it leaves the process: the chosen kinds replaced by their placeholders, or nothing when off.

    Built from a service's settings: ``settings.redactor()`` (``LLMOPS_PII_KINDS`` and the service's
    ``..._REDACT_PII`` switch).
    """

    kinds: frozenset[str] | None = None  # None: every kind
    enabled: bool = True

    def __call__(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        return redact_pii(text, self.kinds)[0]
