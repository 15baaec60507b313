"""OSC 1.0 address patterns, matched in bounded time.

``?`` one character, ``*`` any run of characters, ``[a-z]`` / ``[!a-z]`` one
character in / not in a set, ``{foo,bar}`` one of the words — none of them
crosses a ``/``, as the OSC 1.0 spec says, so a pattern matches an address
part by part. Braces are expanded first (at most ``MAX_ALTERNATIVES`` words in
all); each part is then matched by the two-pointer wildcard walk, which takes
at most (pattern length × address length) steps however many ``*`` a hostile
pattern holds — never a regex that can backtrack for ever.
"""

from __future__ import annotations

import functools
import itertools

PATTERN_CHARS = frozenset("?*[]{}")
MAX_PATTERN_CHARS = 256
MAX_ALTERNATIVES = 64

_ANY = "?"
_STAR = "*"


class OscPatternError(ValueError):
    """A malformed address pattern. The message is one line."""


def is_pattern(address: str) -> bool:
    """True when ``address`` holds any OSC pattern character."""
    return not PATTERN_CHARS.isdisjoint(address)


def matching(pattern: str, addresses) -> list[str]:
    """The addresses (in their given order) that ``pattern`` matches."""
    alternatives = _compile(pattern)
    found = []
    for address in addresses:
        parts = address.split("/")
        if any(len(alt) == len(parts) and all(map(_match_part, alt, parts)) for alt in alternatives):
            found.append(address)
    return found


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> tuple[tuple[tuple, ...], ...]:
    """Every brace expansion of ``pattern``, each as a tuple of per-part token tuples."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise OscPatternError(f"pattern of {len(pattern)} characters, allowed at most {MAX_PATTERN_CHARS}")
    return tuple(tuple(_tokens(part) for part in text.split("/")) for text in _expand_braces(pattern))


def _expand_braces(pattern: str) -> list[str]:
    pieces: list[list[str]] = []  # literal runs and brace word lists, in order
    i = 0
    while i < len(pattern):
        if pattern[i] == "}":
            raise OscPatternError(f"'}}' without '{{' at character {i + 1}")
        if pattern[i] != "{":
            end = pattern.find("{", i)
            end = len(pattern) if end < 0 else end
            close = pattern.find("}", i, end)
            if close >= 0:
                raise OscPatternError(f"'}}' without '{{' at character {close + 1}")
            pieces.append([pattern[i:end]])
            i = end
            continue
        end = pattern.find("}", i)
        if end < 0:
            raise OscPatternError(f"'{{' at character {i + 1} has no '}}'")
        words = pattern[i + 1:end].split(",")
        if any(c in word for word in words for c in "{/"):
            raise OscPatternError(f"braces at character {i + 1} hold '{{' or '/', allowed plain words")
        pieces.append(words)
        i = end + 1
    count = 1
    for words in pieces:
        count *= len(words)
        if count > MAX_ALTERNATIVES:
            raise OscPatternError(f"braces expand to more than {MAX_ALTERNATIVES} addresses")
    return ["".join(choice) for choice in itertools.product(*pieces)]


def _tokens(part: str) -> tuple:
    """One address part as tokens: a character, ``_ANY``, ``_STAR`` or (negated, ranges)."""
    out: list = []
    i = 0
    while i < len(part):
        c = part[i]
        if c == "[":
            end = part.find("]", i + 2)  # a ']' right after '[' (or '[!') is a member
            if end < 0:
                raise OscPatternError(f"'[' in {part!r} has no ']'")
            body = part[i + 1:end]
            negated = body.startswith("!")
            body = body[1:] if negated else body
            ranges = []
            j = 0
            while j < len(body):
                if j + 2 < len(body) and body[j + 1] == "-":
                    ranges.append((body[j], body[j + 2]))
                    j += 3
                else:
                    ranges.append((body[j], body[j]))
                    j += 1
            out.append((negated, tuple(ranges)))
            i = end + 1
            continue
        if c == "]":
            raise OscPatternError(f"']' without '[' in {part!r}")
        if c == "*" and out and out[-1] is _STAR:  # '**' is '*'
            i += 1
            continue
        out.append(_STAR if c == "*" else _ANY if c == "?" else c)
        i += 1
    return tuple(out)


def _accepts(token, char: str) -> bool:
    if token is _ANY:
        return True
    if isinstance(token, tuple):
        negated, ranges = token
        return any(lo <= char <= hi for lo, hi in ranges) != negated
    return token == char


def _match_part(tokens: tuple, text: str) -> bool:
    """Wildcard match of one part: on a mismatch, retry from the last ``*`` one character on."""
    t = p = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(tokens) and tokens[p] is _STAR:
            star, mark = p, t
            p += 1
        elif p < len(tokens) and _accepts(tokens[p], text[t]):
            p += 1
            t += 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            t = mark
        else:
            return False
    while p < len(tokens) and tokens[p] is _STAR:
        p += 1
    return p == len(tokens)
