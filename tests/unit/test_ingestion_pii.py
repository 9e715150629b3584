"""PII redaction of the ingestion domain: what must be caught, and look-alikes that must not be."""

from __future__ import annotations

import time

import pytest

from llmops.ingestion.domain.pii import (
    card_valid,
    es_dni_valid,
    fr_nir_valid,
    iban_valid,
    in_aadhaar_valid,
    luhn_valid,
    nl_bsn_valid,
    redact_pii,
    us_ssn_valid,
    verhoeff_valid,
)

CAUGHT = [
    # email
    ("mail jane.doe+news@example.co.uk today", "mail [EMAIL] today", {"EMAIL": 1}),
    ("a@b.io, x_y@sub.domain.org", "[EMAIL], [EMAIL]", {"EMAIL": 2}),
    # credit cards: Visa, Mastercard (both series), Amex, Discover, JCB, Diners; spaces or dashes
    ("card 4111 1111 1111 1111.", "card [CREDIT_CARD].", {"CREDIT_CARD": 1}),
    ("4111-1111-1111-1111 and 5555555555554444", "[CREDIT_CARD] and [CREDIT_CARD]", {"CREDIT_CARD": 2}),
    ("mc2 2221 0000 0000 0009", "mc2 [CREDIT_CARD]", {"CREDIT_CARD": 1}),
    ("amex 3782 822463 10005", "amex [CREDIT_CARD]", {"CREDIT_CARD": 1}),
    (
        "disc 6011111111111117 jcb 3530111333300000",
        "disc [CREDIT_CARD] jcb [CREDIT_CARD]",
        {"CREDIT_CARD": 2},
    ),
    ("diners 30569309025904", "diners [CREDIT_CARD]", {"CREDIT_CARD": 1}),
    ("paid 4111 1111 1111 1111 2024", "paid [CREDIT_CARD] 2024", {"CREDIT_CARD": 1}),  # year after it
    # IBAN: compact or in groups of four
    ("iban DE89 3704 0044 0532 0130 00 thanks", "iban [IBAN] thanks", {"IBAN": 1}),
    ("GB82WEST12345698765432", "[IBAN]", {"IBAN": 1}),
    ("FR14 2004 1010 0505 0001 3M02 606", "[IBAN]", {"IBAN": 1}),
    ("to NL91 ABNA 0417 1643 00 ASAP", "to [IBAN] ASAP", {"IBAN": 1}),  # the next word is not eaten
    # IP addresses
    ("from 192.168.1.10, then 8.8.8.8.", "from [IP_ADDRESS], then [IP_ADDRESS].", {"IP_ADDRESS": 2}),
    ("v6 2001:db8::8a2e:370:7334 and fe80::1", "v6 [IP_ADDRESS] and [IP_ADDRESS]", {"IP_ADDRESS": 2}),
    ("mapped ::ffff:10.0.0.1", "mapped [IP_ADDRESS]", {"IP_ADDRESS": 1}),
    # US SSN
    ("ssn 123-45-6789", "ssn [US_SSN]", {"US_SSN": 1}),
    ("ssn 123 45 6789", "ssn [US_SSN]", {"US_SSN": 1}),
    # Spanish DNI / NIE (mod-23 letter)
    ("dni 12345678Z nie X1234567L", "dni [ES_DNI] nie [ES_DNI]", {"ES_DNI": 2}),
    ("dni 12345678-Z", "dni [ES_DNI]", {"ES_DNI": 1}),
    # Dutch BSN (11-proof)
    ("bsn 123456782 of 111222333", "bsn [NL_BSN] of [NL_BSN]", {"NL_BSN": 2}),
    ("bsn 1234.56.782", "bsn [NL_BSN]", {"NL_BSN": 1}),
    # Indian Aadhaar (Verhoeff)
    ("aadhaar 2345 6789 0124", "aadhaar [IN_AADHAAR]", {"IN_AADHAAR": 1}),
    ("aadhaar 234567890124", "aadhaar [IN_AADHAAR]", {"IN_AADHAAR": 1}),
    # French NIR (mod 97 key), Corsica included
    ("nir 1 84 12 76 451 089 46", "nir [FR_NIR]", {"FR_NIR": 1}),
    ("nir 184127645108946", "nir [FR_NIR]", {"FR_NIR": 1}),
    ("nir 1 84 06 2A 123 456 01", "nir [FR_NIR]", {"FR_NIR": 1}),
    # UK National Insurance number (prefix and suffix rules)
    ("nino AB 12 34 56 C", "nino [UK_NINO]", {"UK_NINO": 1}),
    ("nino JG103759A", "nino [UK_NINO]", {"UK_NINO": 1}),
    # phones
    ("call +44 20 7946 0958 now", "call [PHONE] now", {"PHONE": 1}),
    ("call (555) 123-4567 or 555-123-4567", "call [PHONE] or [PHONE]", {"PHONE": 2}),
    ("call +1 (555) 123-4567, 1-800-555-1234", "call [PHONE], [PHONE]", {"PHONE": 2}),
    ("ring 020 7946 0958 or 01 23 45 67 89", "ring [PHONE] or [PHONE]", {"PHONE": 2}),
    ("ring +4915112345678 or (030) 1234567", "ring [PHONE] or [PHONE]", {"PHONE": 2}),
    ("in 2024 020 7946 0958 was busy", "in 2024 [PHONE] was busy", {"PHONE": 1}),
]

NOT_PII = [
    # cards: Luhn fails; Luhn passes but no known issuer; part of a longer token; too short
    "card 4111 1111 1111 1112",
    "number 1234567890123452",
    "ref 12-4111-1111-1111-1111",
    "ref 4111111111111111abc",
    "short 411111111111",
    # IBAN: wrong check digits, wrong length for the country, unknown country
    "iban DE88 3704 0044 0532 0130 00",
    "iban DE89 3704 0044 0532 0130 0",
    "iban QQ89 3704 0044 0532 0130 00",
    # IPs: octet out of range, version strings, code slices, times, MAC addresses
    "ip 999.1.1.1 or 256.0.0.1",
    "release 1.2.3 and 1.2.3.4.5",
    "version 1.2.3.4",
    "slice a[1::2] and x::y",
    "at 12:30:45",
    "mac 00:1A:2B:3C:4D:5E",
    # SSN: invalid area, group or serial; no separators
    "ssn 000-12-3456 666-12-3456 912-34-5678 123-00-4567 123-45-0000",
    # DNI / NIE with the wrong letter
    "dni 12345678A nie X1234567A",
    # BSN failing 11-proof
    "bsn 123456789",
    # Aadhaar failing Verhoeff, or starting with 1
    "aadhaar 2345 6789 0123 and 1234 5678 9012",
    # NIR with a wrong key
    "nir 1 84 12 76 451 089 47",
    # NINO with a forbidden first letter, forbidden prefix, or bad suffix
    "nino DA 12 34 56 C, GB 12 34 56 A, AB 12 34 56 E",
    # not phones: dates, years, times, ranges, ISBNs, unformatted digit runs, parts of tokens
    "on 2024-01-15 at 10:30:00 in 2024",
    "stamp 2024-01-15T10:30:00Z",
    "dates 01.02.2024 and 12/05/2024",
    "between 100-1000 users, 2023-2024 season",
    "isbn 978-3-16-148410-0",
    "order 1234567 and 07700900123",
    "id ID-555-123-4567",
    "pi 3.14159265358979",
]


@pytest.mark.parametrize(("text", "redacted", "counts"), CAUGHT)
def test_caught(text: str, redacted: str, counts: dict[str, int]) -> None:
    assert redact_pii(text) == (redacted, counts)


@pytest.mark.parametrize("text", NOT_PII)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert redact_pii(text) == (text, {})


def test_mixed_document_counts_per_type() -> None:
    text = (
        "Contact jane@example.com or +44 20 7946 0958. Card 4111 1111 1111 1111, "
        "IBAN GB82 WEST 1234 5698 7654 32, host 10.0.0.1, SSN 123-45-6789, "
        "backup bob@example.org, on 2024-01-15 (version 1.2.3.4)."
    )
    redacted, counts = redact_pii(text)
    assert redacted == (
        "Contact [EMAIL] or [PHONE]. Card [CREDIT_CARD], "
        "IBAN [IBAN], host [IP_ADDRESS], SSN [US_SSN], "
        "backup [EMAIL], on 2024-01-15 (version 1.2.3.4)."
    )
    assert counts == {"EMAIL": 2, "IBAN": 1, "CREDIT_CARD": 1, "IP_ADDRESS": 1, "US_SSN": 1, "PHONE": 1}


def test_digits_of_cards_and_ibans_are_not_taken_for_phones() -> None:
    redacted, counts = redact_pii("pay 5555 5555 5555 4444 or DE89 3704 0044 0532 0130 00")
    assert counts == {"CREDIT_CARD": 1, "IBAN": 1}
    # and the rest of an IBAN failing its checksum is no phone either
    assert redact_pii("DE88 3704 0044 0532 0130 00") == ("DE88 3704 0044 0532 0130 00", {})


def test_no_pii_returns_text_unchanged() -> None:
    assert redact_pii("") == ("", {})
    assert redact_pii("nothing personal here.") == ("nothing personal here.", {})


def test_checksums_on_reference_vectors() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert verhoeff_valid("2363") and not verhoeff_valid("2364")  # the textbook example
    assert card_valid("4111111111111111") and not card_valid("1234567890123452")
    assert card_valid("378282246310005") and not card_valid("3782822463100050")  # Amex is 15 digits
    assert iban_valid("DE89370400440532013000") and not iban_valid("DE89370400440532013001")
    assert es_dni_valid("12345678Z") and es_dni_valid("y1234567x") and not es_dni_valid("12345678Y")
    assert nl_bsn_valid("123456782") and not nl_bsn_valid("000000000")
    assert in_aadhaar_valid("234567890124") and not in_aadhaar_valid("034567890124")
    assert fr_nir_valid("184127645108946") and fr_nir_valid("184062A12345601")
    assert us_ssn_valid("123", "45", "6789") and not us_ssn_valid("987", "65", "4321")


@pytest.mark.parametrize(
    "text",
    [
        "1" * 3000 + "x",  # a long digit run that no phone pattern may split in exponentially many ways
        "1 " * 1000 + "x",
        "a." * 5000 + "@b",
        "AB12" + " ABCD" * 1000,
        "1:" * 3000 + "x",
    ],
)
def test_pathological_inputs_finish_quickly(text: str) -> None:
    started = time.perf_counter()
    redact_pii(text)
    assert time.perf_counter() - started < 5  # a backtracking pattern never finishes the first
