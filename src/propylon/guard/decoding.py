"""Encoded payloads found in a text, decoded: what an attacker hides from pattern checks and
from a classifier that reads the surface.

``payloads(text)`` returns the plain text of every span that decodes under one of the common
encodings of smuggled instructions: base64, base32, base16/hex, Ascii85, uuencode, ROT13,
Morse, Braille, NATO spelling, Unicode tag characters and "Zalgo" (letters buried under
combining marks). A span counts only when its decoding is readable text (``_printable``), and
ROT13 only when the decoding is more like English than the span, uuencode only when a line's
length matches the length it declares: ordinary words, code and hashes decode to nothing.
Every check is a regular expression over the text and a decode of what it matched: tens of
microseconds on a prompt (a third of the heuristics' own cost), no model.

The heuristics scan each payload again (``heuristics.scan``), and the classifier scores each
payload as a window of its own (``features.units``), so a text costs an extra embedding only
when it holds one. Both ask for a user message's payloads, one after the other: the last
``RECENT`` texts' are remembered (21 µs of a defaults request's CPU was the second search).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import functools
import re
import unicodedata

MIN_LETTERS = 6  # a payload shorter than this (in letters) says nothing
MAX_PAYLOADS = 4
RECENT = 8  # texts whose payloads are remembered
RECENT_MAX_CHARS = 32_768  # longer texts are searched each time (the guard reads 32,768 a request)

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{16,}={0,2}(?![A-Za-z0-9+/=])")
_BASE32 = re.compile(r"(?<![A-Za-z0-9=])[A-Z2-7]{16,}={0,6}(?![A-Za-z0-9=])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}[\s:]?){8,}(?![0-9A-Fa-f])")
# Ascii85: a run of its alphabet without spaces, with punctuation in it (words and
# identifiers are not Ascii85), optionally between <~ ~>.
_ASCII85 = re.compile(r"(?:<~)?(?=[!-u]*[!-/:-@\[-`])[!-u]{12,}(?:~>)?")
_UU_LINE = re.compile(r"^[!-M][ -`]{8,61}$", re.M)
_MORSE = re.compile(r"(?:[.\-]{1,7}(?:\s+/\s+|\s+|$)){6,}")
_BRAILLE = re.compile("[\u2800-\u28ff][\u2800-\u28ff ]{4,}")
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_COMBINING_RUN = re.compile(r"[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff]{2,}")
_WORDS = re.compile(r"[A-Za-z]+")

_MORSE_TABLE = {
    ".-": "a", "-...": "b", "-.-.": "c", "-..": "d", ".": "e", "..-.": "f", "--.": "g",
    "....": "h", "..": "i", ".---": "j", "-.-": "k", ".-..": "l", "--": "m", "-.": "n",
    "---": "o", ".--.": "p", "--.-": "q", ".-.": "r", "...": "s", "-": "t", "..-": "u",
    "...-": "v", ".--": "w", "-..-": "x", "-.--": "y", "--..": "z", "-----": "0",
    ".----": "1", "..---": "2", "...--": "3", "....-": "4", ".....": "5", "-....": "6",
    "--...": "7", "---..": "8", "----.": "9", ".-.-.-": ".", "--..--": ",", "..--..": "?",
    "-.-.--": "!", ".----.": "'",
}  # fmt: skip
# Braille cells (bit n-1 = dot n) of the letters, grade 1; dot 6 alone capitalises.
_BRAILLE_LETTERS = dict(
    zip(
        [0x01, 0x03, 0x09, 0x19, 0x11, 0x0B, 0x1B, 0x13, 0x0A, 0x1A, 0x05, 0x07, 0x0D,
         0x1D, 0x15, 0x0F, 0x1F, 0x17, 0x0E, 0x1E, 0x25, 0x27, 0x3A, 0x2D, 0x3D, 0x35],
        "abcdefghijklmnopqrstuvwxyz",
        strict=True,
    )
)  # fmt: skip
_NATO = {
    "alfa": "a", "alpha": "a", "bravo": "b", "charlie": "c", "delta": "d", "echo": "e",
    "foxtrot": "f", "golf": "g", "hotel": "h", "india": "i", "juliet": "j", "juliett": "j",
    "kilo": "k", "lima": "l", "mike": "m", "november": "n", "oscar": "o", "papa": "p",
    "quebec": "q", "romeo": "r", "sierra": "s", "tango": "t", "uniform": "u", "victor": "v",
    "whiskey": "w", "whisky": "w", "xray": "x", "x-ray": "x", "yankee": "y", "zulu": "z",
}  # fmt: skip
_NATO_RUN = re.compile(
    r"(?:\b(?:" + "|".join(re.escape(w) for w in _NATO) + r")\b[\s,]*){6,}", re.I
)
# The most frequent English words: decoded text holds some, a random string or code few.
_COMMON_WORDS = (
    "the be to of and a in that have i it for not on with he as you do at this but his by "
    "from they we say her she or an will my one all would there their what so up out if "
    "about who get which go me when make can like time no just him know take people into "
    "year your good some could them see other than then now look only come its over think "
    "also back after use two how our work first well way even new want because any these "
    "give day most us is are was were has had been am said where"
)
_COMMON = frozenset(_COMMON_WORDS.split())


def payloads(text: str) -> list[tuple[str, str]]:
    """``(encoding, decoded text)`` of each encoded span of ``text`` (at most
    ``MAX_PAYLOADS``, the first of each distinct text)."""
    if len(text) > RECENT_MAX_CHARS:  # not kept: the cache would hold the text alive
        return list(_search(text))
    return list(_remembered(text))


def _search(text: str) -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    if not text.isascii():
        found += [("tags", p) for p in _tags(text)]
        found += [("zalgo", p) for p in _zalgo(text)]
        found += [("braille", p) for p in _braille(text)]
    spans = [("base64", _BASE64, _b64), ("base32", _BASE32, _b32), ("hex", _HEX, _hex)]
    if any(len(t) >= 12 and not t.isalnum() for t in text.split()):
        spans.append(("ascii85", _ASCII85, _a85))
    for name, pattern, decode in spans:
        for match in pattern.finditer(text):
            decoded = decode(match.group(0))
            if decoded is not None and _readable(decoded):
                found.append((name, decoded))
    found += [("uuencode", p) for p in _uu(text)]
    found += [("morse", p) for p in _morse(text)]
    found += [("nato", p) for p in _nato(text)]
    found += [("rot13", p) for p in _rot13(text)]
    unique: dict[str, str] = {}
    for name, decoded in found:
        if decoded.strip():
            unique.setdefault(decoded.strip(), name)
    return tuple((name, decoded) for decoded, name in unique.items())[:MAX_PAYLOADS]


_remembered = functools.lru_cache(maxsize=RECENT)(_search)


def english_share(text: str) -> float:
    """The share of ``text``'s words that are among the most frequent English words."""
    words = [w.lower() for w in _WORDS.findall(text) if len(w) > 1]
    return sum(w in _COMMON for w in words) / len(words) if words else 0.0


def _readable(text: str) -> bool:
    letters = sum(c.isalpha() for c in text)
    return letters >= MIN_LETTERS and letters + text.count(" ") >= 0.7 * len(text)


def _printable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text or sum(c.isprintable() or c.isspace() for c in text) < 0.9 * len(text):
        return None
    return text


def _b64(candidate: str) -> str | None:
    padded = candidate + "=" * (-len(candidate) % 4)
    try:
        return _printable(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError):
        return None


def _b32(candidate: str) -> str | None:
    padded = candidate.rstrip("=")
    padded += "=" * (-len(padded) % 8)
    try:
        return _printable(base64.b32decode(padded))
    except (binascii.Error, ValueError):
        return None


def _hex(candidate: str) -> str | None:
    try:
        return _printable(bytes.fromhex(re.sub(r"[\s:]", "", candidate)))
    except ValueError:
        return None


def _a85(candidate: str) -> str | None:
    try:
        return _printable(base64.a85decode(candidate, adobe=candidate.startswith("<~")))
    except (binascii.Error, ValueError):
        return None


def _uu(text: str) -> list[str]:
    out = []
    for match in _UU_LINE.finditer(text):
        line = match.group(0)
        size = (ord(line[0]) - 32) & 63  # the first character is the decoded length
        expected = 1 + 4 * ((size + 2) // 3)
        if not expected - 2 <= len(line.rstrip("`")) <= expected:
            continue  # an ordinary sentence also fits uuencode's alphabet, not its length
        try:
            decoded = _printable(binascii.a2b_uu(line))
        except (binascii.Error, ValueError):
            continue
        if decoded is not None and _readable(decoded):
            out.append(decoded)
    return out


def _tags(text: str) -> list[str]:
    return [
        "".join(chr(ord(c) - 0xE0000) for c in run if ord(c) >= 0xE0020)
        for run in _TAGS.findall(text)
    ]


def _zalgo(text: str) -> list[str]:
    if not _COMBINING_RUN.search(text):
        return []
    plain = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return [plain]


def _braille(text: str) -> list[str]:
    out = []
    for match in _BRAILLE.finditer(text):
        chars = []
        capital = False
        for c in match.group(0):
            dots = ord(c) - 0x2800
            if c == " ":
                chars.append(" ")
            elif dots == 0x20:  # capital sign
                capital = True
            elif dots in _BRAILLE_LETTERS:
                letter = _BRAILLE_LETTERS[dots]
                chars.append(letter.upper() if capital else letter)
                capital = False
        decoded = "".join(chars)
        if _readable(decoded):
            out.append(decoded)
    return out


def _morse(text: str) -> list[str]:
    out: list[str] = []
    if text.count("-") + text.count(".") < 12:
        return out
    for match in _MORSE.finditer(text):
        words = []
        for word in re.split(r"\s+/\s+|\s{3,}", match.group(0).strip()):
            letters = [_MORSE_TABLE.get(code) for code in word.split()]
            if any(letter is None for letter in letters):
                break
            words.append("".join(letter for letter in letters if letter is not None))
        decoded = " ".join(words)
        if _readable(decoded):
            out.append(decoded)
    return out


def _nato(text: str) -> list[str]:
    if sum(w.lower() in _NATO for w in _WORDS.findall(text)) < 6:
        return []
    return [
        "".join(_NATO[w.lower()] for w in re.findall(r"[A-Za-z-]+", match.group(0)))
        for match in _NATO_RUN.finditer(text)
    ]


def _rot13(text: str) -> list[str]:
    """Lines of at least five words with no frequent English word whose ROT13 has several."""
    out = []
    for line in text.splitlines():
        words = [w.lower() for w in _WORDS.findall(line) if len(w) > 1]
        if len(words) < 5 or any(w in _COMMON for w in words):
            continue
        decoded = [codecs.decode(w, "rot13") for w in words]
        if sum(w in _COMMON for w in decoded) >= max(3, len(words) // 3):
            out.append(codecs.decode(line, "rot13"))
    return out
