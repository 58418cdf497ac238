"""Click events as JSON objects: one per line in `*.jsonl` logs, and the scoring API body.

The schema is documented on `ClickEvent`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from src.data.log_parser import HTTP_TOKEN_PATTERN, INT64_MAX, PROTOCOL_PATTERN
from src.data.pseudonymize import InvalidClientAddress, parse_client_address

# Key of the validation context entry that sets the maximum path length, for example
# `ClickEvent.model_validate_json(text, context={MAX_PATH_CHARS_CONTEXT: 8192})`.
MAX_PATH_CHARS_CONTEXT = "max_path_chars"
# Maximum path length when no context is given. It equals data.click_event_max_path_chars
# in conf/data/default.yaml, and a test checks that the two stay equal.
DEFAULT_MAX_PATH_CHARS = 8192

# HTTP status codes are three-digit numbers from 100 to 599 (RFC 9110, section 15).
MIN_STATUS = 100
MAX_STATUS = 599

SOURCE_FORMAT = "jsonl"


class ClickEvent(BaseModel):
    """One HTTP request to the site, as a JSON object.

    Fields (any other field is rejected):

    - `ts` (required, string or number): an ISO-8601 time with a UTC offset, such as
      "2019-10-14T10:50:18+02:00" or "2019-10-14T08:50:18Z", or Unix epoch seconds.
      A time without an offset is rejected. The value is stored in UTC.
    - `client_ip` (required, string): an IPv4 or IPv6 address. Brackets and a zone id
      are allowed, and an IPv4-mapped IPv6 address is stored as IPv4. Host names are
      rejected.
    - `user_agent` (required, string): the User-Agent header, "" when there was none.
    - `path` (required, string): the request target. It starts with "/" and has at most
      `data.click_event_max_path_chars` characters.
    - `method` (string, default "GET"): an HTTP method token. Its case is kept.
    - `referrer` (string or null): the Referer header.
    - `protocol` (string or null): for example "HTTP/1.1".
    - `status` (integer or null): the response status, 100 to 599.
    - `bytes` (integer or null): the response body size in bytes, 0 or more.

    Validate with `ClickEvent.model_validate_json(text, context={"max_path_chars": n})`
    to apply the configured path limit. Without the context the limit is
    DEFAULT_MAX_PATH_CHARS.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ts: datetime
    client_ip: str
    user_agent: str
    method: str = Field(default="GET", pattern=f"^{HTTP_TOKEN_PATTERN}$")
    path: str
    referrer: str | None = None
    protocol: str | None = Field(default=None, pattern=f"^{PROTOCOL_PATTERN}$")
    status: int | None = Field(default=None, ge=MIN_STATUS, le=MAX_STATUS, strict=True)
    bytes: int | None = Field(default=None, ge=0, le=INT64_MAX, strict=True)

    @field_validator("ts", mode="before")
    @classmethod
    def _parse_ts(cls, value: Any) -> datetime:
        """Convert ISO-8601 text with an offset or epoch seconds to a UTC datetime."""
        if isinstance(value, bool):
            raise ValueError("ts must be an ISO-8601 string with a UTC offset or epoch seconds, not a boolean")
        if isinstance(value, int | float):
            return _from_epoch_seconds(value)
        if isinstance(value, str):
            value = _from_iso_text(value)
        if not isinstance(value, datetime):
            raise ValueError("ts must be an ISO-8601 string with a UTC offset or epoch seconds")
        if value.utcoffset() is None:
            raise ValueError(
                f"ts {value.isoformat()} has no UTC offset; add one, for example 2019-10-14T10:50:18+02:00 "
                "or 2019-10-14T08:50:18Z"
            )
        return value.astimezone(UTC)

    @field_validator("client_ip")
    @classmethod
    def _check_client_ip(cls, value: str) -> str:
        """Accept IP addresses only. The message leaves the value out because it may be an IP."""
        try:
            address = parse_client_address(value)
        except InvalidClientAddress as err:
            raise ValueError(f"client_ip is not a valid IP address: {err}") from None
        if isinstance(address, str):
            raise ValueError("client_ip must be an IPv4 or IPv6 address, not a host name")
        return str(address)

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str, info: ValidationInfo) -> str:
        """Require a leading slash and at most the configured number of characters."""
        if not value.startswith("/"):
            raise ValueError("path must start with '/', for example /go/product-1")
        context = info.context or {}
        max_chars = int(context.get(MAX_PATH_CHARS_CONTEXT, DEFAULT_MAX_PATH_CHARS))
        if len(value) > max_chars:
            raise ValueError(f"path has {len(value)} characters; the maximum is {max_chars}")
        return value

    def to_raw_fields(self) -> dict[str, Any]:
        """Return the event as the fields that `log_parser.parse_line` returns for a log line."""
        return {
            "ts": self.ts,
            "client_ip": self.client_ip,
            "method": self.method,
            "path": self.path,
            "protocol": self.protocol or "",
            "status": self.status,
            "bytes": self.bytes,
            "referrer": self.referrer or "",
            "user_agent": self.user_agent,
            "source_format": SOURCE_FORMAT,
        }


def _from_epoch_seconds(value: float) -> datetime:
    if not math.isfinite(value):
        raise ValueError(f"ts {value} is not a finite number of epoch seconds")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"ts {value} is outside the supported range of epoch seconds") from None


def _from_iso_text(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"ts {text!r} is not an ISO-8601 time; use for example 2019-10-14T10:50:18+02:00 or epoch seconds"
        ) from None


class StoredClickEvent(ClickEvent):
    """A click as `botclick export-clicks` writes it from the click store.

    The service pseudonymized the client before storing it, so `client_id` and `prefix_id`
    replace `client_ip`, and collect keeps them as they are. The scoring fields the store
    adds are accepted and dropped: training recomputes sessions and scores.
    """

    client_ip: str = ""
    client_id: str = Field(pattern=r"^[0-9a-f]{4,64}$")
    prefix_id: str = Field(pattern=r"^[0-9a-f]{4,64}$")
    session_id: str | None = None
    bot_probability: float | None = None
    decision: str | None = None
    model_version: str | None = None
    received_at: str | None = None
    store_id: int | None = None

    @field_validator("client_ip")
    @classmethod
    def _check_client_ip(cls, value: str) -> str:
        """Reject a raw address next to the pseudonyms, so a stored row never carries one."""
        if value:
            raise ValueError("a stored click has client_id and prefix_id; remove client_ip")
        return value

    def to_raw_fields(self) -> dict[str, Any]:
        """Return the event as raw-event fields, with the stored pseudonyms and no client_ip."""
        fields = super().to_raw_fields()
        del fields["client_ip"]
        fields["client_id"], fields["prefix_id"] = self.client_id, self.prefix_id
        return fields
