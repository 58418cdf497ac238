"""Parse one access-log line in Apache or Nginx combined or common format.

Common format is `%h %l %u %t "%r" %>s %b`. Combined format adds
`"%{Referer}i" "%{User-Agent}i"`, and any number of further quoted fields (such as a
trailing `"-"`) are accepted and ignored. Inside quoted fields Apache writes `"` as `\\"`
and `\\` as `\\\\`, and Nginx writes `"` as `\\x22`. These three escapes are decoded in the
stored values. Other escapes such as `\\xf0` stay as written.

`parse_line` returns the raw event columns except `client_id`, `prefix_id`, `source` and
`line_no`. The raw client address comes back in `client_ip`, and the caller must replace it
with pseudonyms at once. A line that cannot be read raises `LineError` with a short reason.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from src.data.pseudonymize import is_client_address

# RFC 9110 token characters: the syntax of an HTTP method.
HTTP_TOKEN_PATTERN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# A protocol such as HTTP/1.1 or HTTP/2.
PROTOCOL_PATTERN = r"[A-Za-z]+/[0-9]+(?:\.[0-9]+)?"
# Largest value of the int64 `bytes` column.
INT64_MAX = 2**63 - 1

# A quoted field, as an unrolled loop: runs of plain characters separated by single escapes.
# Each step consumes input, so matching stays linear on 10,000-character URLs.
_QUOTED_BODY = r'[^"\\]*(?:\\.[^"\\]*)*'
_QUOTED_FIELD_RE = re.compile(f'"({_QUOTED_BODY})"')

_LINE_RE = re.compile(
    r"(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]*)\] "
    rf'"(?P<request>{_QUOTED_BODY})" (?P<status>[0-9]{{3}}|-) (?P<bytes>[0-9]+|-)'
    rf'(?: "(?P<referrer>{_QUOTED_BODY})" "(?P<user_agent>{_QUOTED_BODY})"(?: "{_QUOTED_BODY}")*)?'
    r"\s*"
)
# The fields before the request, used to name the problem when _LINE_RE does not match.
_HEAD_RE = re.compile(r"(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]*)\]")
_SPACES_RE = re.compile(r"\s*")
_WORD_RE = re.compile(r"\S+")
_STATUS_RE = re.compile(r"[0-9]{3}|-")
_BYTES_RE = re.compile(r"[0-9]+|-")

_METHOD_RE = re.compile(HTTP_TOKEN_PATTERN)
_PROTOCOL_RE = re.compile(PROTOCOL_PATTERN)
_ESCAPE_RE = re.compile(r'\\(["\\]|[xX]22)')

_MONTHS = {
    "Jan": 1, "Feb": 2, "Mar": 3, "Apr": 4, "May": 5, "Jun": 6,
    "Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12,
}  # fmt: skip
# Layout of "10/Oct/2000:13:55:36 -0700": its length and the separators at 2, 6, 11, 14, 17, 20.
_TIMESTAMP_CHARS = 26
_TIMESTAMP_SEPARATORS = "//::: "
_MINUTES_PER_HOUR = 60


class LineError(ValueError):
    """A line that cannot be parsed, with a short machine-readable reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_line(line: str) -> dict[str, Any]:
    """Parse one access-log line (without its line break) into raw event fields.

    Returns ts (UTC datetime), client_ip, method, path, protocol, status, bytes,
    referrer, user_agent and source_format ("combined" or "common"). Raises LineError.
    """
    if not line.strip():
        raise LineError("empty_line")

    match = _LINE_RE.fullmatch(line)
    if match is None:
        raise LineError(_diagnose(line))

    client_ip = _check_client(match["client"])
    ts = parse_timestamp(match["time"])
    method, path, protocol = split_request(_unescape(match["request"]))
    user_agent = match["user_agent"]

    return {
        "ts": ts,
        "client_ip": client_ip,
        "method": method,
        "path": path,
        "protocol": protocol,
        "status": None if match["status"] == "-" else int(match["status"]),
        "bytes": _parse_bytes(match["bytes"]),
        "referrer": _text_field(match["referrer"]),
        "user_agent": _text_field(user_agent),
        "source_format": "common" if user_agent is None else "combined",
    }


def parse_timestamp(text: str) -> datetime:
    """Parse an access-log time such as "10/Oct/2000:13:55:36 -0700" into a UTC datetime.

    Reads fixed positions instead of calling strptime, because this runs once per line.
    Raises LineError("invalid_timestamp").
    """
    if len(text) != _TIMESTAMP_CHARS or text[21] not in "+-":
        raise LineError("invalid_timestamp")
    if text[2] + text[6] + text[11] + text[14] + text[17] + text[20] != _TIMESTAMP_SEPARATORS:
        raise LineError("invalid_timestamp")
    digits = text[0:2] + text[7:11] + text[12:14] + text[15:17] + text[18:20] + text[22:26]
    month = _MONTHS.get(text[3:6])
    if month is None or not (digits.isascii() and digits.isdigit()):
        raise LineError("invalid_timestamp")

    if int(text[24:26]) >= _MINUTES_PER_HOUR:
        raise LineError("invalid_timestamp")
    offset_minutes = int(text[22:24]) * _MINUTES_PER_HOUR + int(text[24:26])
    sign = 1 if text[21] == "+" else -1
    try:
        local = datetime(
            int(text[7:11]), month, int(text[0:2]),
            int(text[12:14]), int(text[15:17]), int(text[18:20]), tzinfo=UTC,
        )  # fmt: skip
        return local - timedelta(minutes=sign * offset_minutes)
    except (ValueError, OverflowError):
        raise LineError("invalid_timestamp") from None


def split_request(request: str) -> tuple[str, str, str]:
    """Split a request line into method, path and protocol, keeping what can be read.

    "GET / HTTP/1.1" gives all three, and an HTTP/0.9 line "GET /" gives no protocol.
    A first word that is not an HTTP token (binary junk such as "\\x16\\x03") is not taken
    as the method, so it stays in the path. "-" and "" give three empty strings.
    """
    words = request.split()
    if not words or words == ["-"]:
        return "", "", ""

    protocol = ""
    if len(words) > 1 and _PROTOCOL_RE.fullmatch(words[-1]):
        protocol = words.pop()
    method = ""
    if _METHOD_RE.fullmatch(words[0]):
        method = words.pop(0)
    return method, " ".join(words), protocol


def _check_client(text: str) -> str:
    if not is_client_address(text):
        raise LineError("invalid_client_address")
    return text


def _parse_bytes(text: str) -> int | None:
    if text == "-":
        return None
    value = int(text)
    if value > INT64_MAX:
        raise LineError("invalid_bytes")
    return value


def _text_field(value: str | None) -> str:
    if value is None or value == "-":
        return ""
    return _unescape(value)


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _ESCAPE_RE.sub(lambda match: "\\" if match[1] == "\\" else '"', value)


def _diagnose(line: str) -> str:
    """Return the reason why `line` does not match the combined or common format.

    Checks the fields from left to right, so the reason names the first bad field. A bad
    client address or time raises LineError with that reason instead.
    """
    head = _HEAD_RE.match(line)
    if head is None:
        return "unrecognized_format"
    _check_client(head["client"])
    parse_timestamp(head["time"])

    fields: list[str | None] = []
    position = _SPACES_RE.match(line, head.end()).end()
    while position < len(line):
        if line[position] == '"':
            field = _QUOTED_FIELD_RE.match(line, position)
            if field is None:
                return "unterminated_quoted_field"
            fields.append(None)
        else:
            field = _WORD_RE.match(line, position)
            fields.append(field[0])
        position = _SPACES_RE.match(line, field.end()).end()
    return _diagnose_fields(fields)


def _diagnose_fields(fields: list[str | None]) -> str:
    """Name the problem in the fields after the time. None stands for a quoted field."""
    if any(field is not None and '"' in field for field in fields):
        return "unescaped_quote"
    if not fields or fields[0] is not None:
        return "unrecognized_format"
    if len(fields) < 2 or fields[1] is None or not _STATUS_RE.fullmatch(fields[1]):
        return "invalid_status"
    if len(fields) < 3 or fields[2] is None or not _BYTES_RE.fullmatch(fields[2]):
        return "invalid_bytes"
    return "unrecognized_format"
