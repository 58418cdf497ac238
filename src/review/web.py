"""The review page (`botclick review --web`): a small FastAPI app on a loopback address.

Access needs the token: once as `?token=...` (it is then kept in an HttpOnly,
SameSite=Strict cookie and the page reloads without it) or as "Authorization: Bearer
<token>". Anything else gets 401. Label forms carry a nonce derived from a per-process
key and the session id, and a POST must come from the page's own origin, so another
site cannot submit a label. The page sets Referrer-Policy same-origin, because under
no-referrer browsers send "Origin: null" with every form post. Requests whose Host
header is not a loopback name get 400, which blocks DNS rebinding.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import logging
import secrets
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from src.review.desk import SKIP, ReviewDesk
from src.review.queue import ReviewItem
from src.review.terminal import cut

logger = logging.getLogger(__name__)

STATUS_BAD_REQUEST, STATUS_UNAUTHORIZED, STATUS_FORBIDDEN, STATUS_NOT_FOUND = 400, 401, 403, 404
SEE_OTHER = 303
LOOPBACK_NAMES = frozenset({"localhost"})
# Largest form body accepted (bytes); a note of review.max_note_chars fits many times over.
MAX_FORM_BYTES = 65536
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    """Tell whether a host name or address is on the loopback interface."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def generate_token() -> str:
    """Return a random URL-safe access token of 32 characters."""
    return secrets.token_urlsafe(24)


class ReviewPageAuth:
    """Token and nonce checks of the review page."""

    def __init__(self, token: str, cookie_name: str) -> None:
        self.token = token
        self.cookie_name = cookie_name
        self._nonce_key = secrets.token_bytes(32)
        self.failures = 0

    def matches(self, candidate: str | None) -> bool:
        """Compare a presented token with the real one in constant time."""
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    def authorized(self, request: Request) -> bool:
        """Tell whether the request carries the token in the cookie or a bearer header."""
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.matches(bearer.strip()):
            return True
        return self.matches(request.cookies.get(self.cookie_name))

    def nonce(self, session_id: str) -> str:
        """Return the form nonce of one queued session."""
        return hmac.new(self._nonce_key, session_id.encode(), hashlib.sha256).hexdigest()

    def record_failure(self, request: Request, reason: str) -> None:
        """Log rejected requests: the first ten, then every hundredth."""
        self.failures += 1
        if self.failures <= 10 or self.failures % 100 == 0:
            logger.warning("review page rejected %s %s: %s (%d rejections so far)", request.method, request.url.path, reason, self.failures)


def create_review_app(desk: ReviewDesk, token: str, cookie_name: str) -> FastAPI:
    """Build the review page app for one reviewer's desk."""
    auth = ReviewPageAuth(token, cookie_name)
    app = FastAPI(title="botclick review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.desk = desk

    @app.middleware("http")
    async def guard(request: Request, call_next):  # type: ignore[no-untyped-def]
        host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
        if not is_loopback(host):
            auth.record_failure(request, "Host header is not a loopback name")
            return _with_headers(JSONResponse({"detail": "the review page answers only on loopback host names"}, STATUS_BAD_REQUEST))
        return _with_headers(await call_next(request))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Return ok while the page is served; needs no token."""
        return {"status": "ok"}

    @app.get("/")
    async def page(request: Request, token: str | None = None, message: str = "") -> Response:
        """Show the next session to review, or set the cookie from ?token= and reload."""
        if token is not None:
            if not auth.matches(token):
                auth.record_failure(request, "invalid token in the address")
                return _unauthorized()
            response = RedirectResponse("/", status_code=SEE_OTHER)
            response.set_cookie(cookie_name, token, httponly=True, samesite="strict", path="/")
            return response
        if not auth.authorized(request):
            auth.record_failure(request, "no valid token")
            return _unauthorized()
        return HTMLResponse(render_page(desk, auth, desk.next_item(), message))

    @app.post("/label")
    async def label(request: Request) -> Response:
        """Write a bot or human review of one session, or skip it; then show the next session."""
        if not auth.authorized(request):
            auth.record_failure(request, "no valid token")
            return _unauthorized()
        if not _same_origin(request):
            auth.record_failure(request, "cross-origin form post")
            return HTMLResponse("Rejected: the form was not sent from this page.", STATUS_FORBIDDEN)
        form = await _read_form(request)
        if form is None:
            return HTMLResponse("Rejected: the form body is too large or not URL-encoded.", STATUS_BAD_REQUEST)
        return _apply_form(desk, auth, request, form)

    return app


def _apply_form(desk: ReviewDesk, auth: ReviewPageAuth, request: Request, form: dict[str, str]) -> Response:
    session_id, action, note = form.get("session_id", ""), form.get("action", ""), form.get("note", "")
    if not hmac.compare_digest(form.get("nonce", ""), auth.nonce(session_id)):
        auth.record_failure(request, "invalid form nonce")
        return HTMLResponse("Rejected: the form nonce is invalid. Reload the page and try again.", STATUS_FORBIDDEN)
    if desk.queue.get(session_id) is None:
        return HTMLResponse(f"Session {html.escape(session_id)} is not in the review queue.", STATUS_NOT_FOUND)
    try:
        if action == SKIP:
            desk.skip(session_id)
            message = f"Skipped {session_id}."
        else:
            record = desk.label(session_id, action, note)
            message = f"Labelled {session_id} as {record.label}."
    except ValueError as err:
        return HTMLResponse(f"Rejected: {html.escape(str(err))}", STATUS_BAD_REQUEST)
    return RedirectResponse("/?message=" + quote(message), status_code=SEE_OTHER)


async def _read_form(request: Request) -> dict[str, str] | None:
    """Parse a URL-encoded form body; None when it is too large or of another type."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return None
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[-1] for key, values in fields.items()}


def _same_origin(request: Request) -> bool:
    """Accept a POST whose Origin (or, without it, Referer) is this page's own origin."""
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    origin = request.headers.get("origin")
    if origin is not None:
        return origin == own
    referer = request.headers.get("referer")
    return referer is None or referer.startswith(own + "/")


def _unauthorized() -> Response:
    body = "Missing or invalid token. Open the address that `botclick review --web` printed, with ?token=."
    return HTMLResponse(body, STATUS_UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


def _with_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


PAGE_STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:80em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;font-size:90%}"
    "button{font-size:110%;margin-right:1em}#message{color:#064}"
)


def render_page(desk: ReviewDesk, auth: ReviewPageAuth, item: ReviewItem | None, message: str) -> str:
    """Return the HTML of the review page; every value from the queue is escaped."""
    progress = desk.progress()
    counts = ", ".join(f"{key} {value}" for key, value in progress.items())
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>botclick review</title>",
        f"<style>{PAGE_STYLE}</style></head><body><h1>Review flagged sessions</h1>",
        f"<p id='message'>{html.escape(message)}</p><p id='progress'>{html.escape(counts)}</p>",
    ]
    if item is None:
        parts.append("<p id='done'>No session left to review.</p>")
    else:
        summary, requests = _item_html(item, desk.settings.max_text_chars)
        form = _form_html(item, auth.nonce(item.session_id), desk.labels, desk.settings.max_note_chars)
        parts += [summary, form, requests]
    parts.append("</body></html>")
    return "".join(parts)


def _item_html(item: ReviewItem, limit: int) -> tuple[str, str]:
    """Return the session summary with its reasons, and the table of its requests."""
    e = html.escape
    facts = [
        ("session", f"<span id='session-id'>{e(item.session_id)}</span>"),
        ("score", e(f"{item.bot_probability:.3f} ({item.decision}, {item.reason}, model version {item.model_version})")),
        ("client", e(f"{item.client_id} (pseudonym)")),
        ("user agent", e(cut(item.user_agent, limit) or "(none)")),
        ("time", e(f"{item.session_start} to {item.session_end}, {item.n_requests} requests")),
    ]
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in facts)
    reasons = "".join(f"<li>{e(reason)}</li>" for reason in item.top_reasons) or "<li>(no reasons recorded)</li>"
    requests = "".join(
        "<tr>" + "".join(f"<td>{e(cut(str(r[key] if r[key] is not None else ''), limit))}</td>"
                         for key in ("ts", "method", "path", "status", "referrer", "kind")) + "</tr>"
        for r in item.requests
    )  # fmt: skip
    omitted = f"<p>{item.requests_omitted} more requests not kept.</p>" if item.requests_omitted else ""
    summary = f"<table id='facts'>{rows}</table><h2>Top reasons</h2><ul id='reasons'>{reasons}</ul>"
    table = (
        "<h2>Requests</h2><table id='requests'><tr><th>time</th><th>method</th><th>path</th><th>status</th>"
        f"<th>referrer</th><th>kind</th></tr>{requests}</table>{omitted}"
    )
    return summary, table


def _form_html(item: ReviewItem, nonce: str, labels: list[str], max_note_chars: int) -> str:
    e = html.escape
    buttons = "".join(
        f"<button type='submit' name='action' value='{e(label)}' id='label-{e(label)}' accesskey='{e(label[:1])}'>{e(label)}</button>"
        for label in labels
    )
    return (
        "<form method='post' action='/label' id='review-form'>"
        f"<input type='hidden' name='session_id' value='{e(item.session_id)}'>"
        f"<input type='hidden' name='nonce' value='{e(nonce)}'>"
        f"<p><label>Note <input type='text' name='note' id='note' maxlength='{max_note_chars}' size='60'></label></p>"
        f"<p>{buttons}<button type='submit' name='action' value='{SKIP}' id='skip' accesskey='s'>skip</button></p>"
        "</form>"
    )
