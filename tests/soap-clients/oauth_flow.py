"""A real OAuth 1.0a client (requests-oauthlib / oauthlib, HMAC-SHA1, Authorization header)
drives the three-legged flow against the server and then reads a demographic over REST.

Usage: oauth_flow.py BASE_URL CLIENT_KEY CLIENT_SECRET SHORT_KEY SHORT_SECRET USER PASSWORD PIN DEMOGRAPHIC_NO
SHORT_KEY/SHORT_SECRET belong to a client registered with a 2-second token lifetime.
Prints one line per check; exits non-zero on the first failure. Never prints a secret.
"""

import html
import json
import re
import secrets
import sys
import time
import urllib.parse

import oauthlib.oauth1
import requests
from requests_oauthlib import OAuth1Session
from requests_oauthlib.oauth1_session import TokenRequestDenied

CALLBACK = "http://127.0.0.1:9/callback"
TIMEOUT = 30


class Failure(Exception):
    """A check did not hold; the message says what was expected and what came instead."""


def redact(text: str) -> str:
    """Hides token secrets and verifiers that an unexpected response body may carry."""
    return re.sub(r"(oauth_token_secret|oauth_verifier)=[^&\s\"']*", r"\1=<redacted>", text)


def got(response: requests.Response) -> str:
    return f"HTTP {response.status_code}: {redact(response.text[:200])!r}"


def expect_status(what: str, response: requests.Response, *expected: int) -> None:
    if response.status_code not in expected:
        wanted = " or ".join(f"HTTP {status}" for status in expected)
        raise Failure(f"{what}: expected {wanted}, got {got(response)}")


def expect_json(what: str, response: requests.Response):
    expect_status(what, response, 200)
    try:
        return response.json()
    except ValueError:
        raise Failure(f"{what}: expected a JSON body, got {got(response)}") from None


# --- the three legs ------------------------------------------------------------------------


def initiate(base: str, key: str, secret: str) -> tuple[str, str]:
    """Leg 1: a request token, with the callback confirmed."""
    session = OAuth1Session(key, client_secret=secret, callback_uri=CALLBACK)
    try:
        token = session.fetch_request_token(f"{base}/ws/oauth/initiate", timeout=TIMEOUT)
    except TokenRequestDenied as denied:
        raise Failure(f"initiate: expected HTTP 200, got {got(denied.response)}") from None
    if not token.get("oauth_token_secret"):
        raise Failure("initiate: the response carries no oauth_token_secret")
    if token.get("oauth_callback_confirmed") != "true":
        raise Failure(
            f"initiate: expected oauth_callback_confirmed=true, got {token.get('oauth_callback_confirmed')!r}"
        )
    return token["oauth_token"], token["oauth_token_secret"]


def authorize_page(browser: requests.Session, base: str, request_token: str,
                   signed_in: bool = False) -> str:
    """The login-and-allow page (without sign-in fields when the browser is signed in);
    returns its session_authenticity_token."""
    response = browser.get(
        f"{base}/ws/oauth/authorize", params={"oauth_token": request_token}, timeout=TIMEOUT
    )
    expect_status("authorize page", response, 200)
    page = response.text
    actions = [html.unescape(a) for a in re.findall(r'<form\b[^>]*\baction="([^"]*)"', page)]
    if not any(urllib.parse.urlsplit(a).path.endswith("/ws/oauth/authorize/decision") for a in actions):
        raise Failure(f"authorize page: no form posts to /ws/oauth/authorize/decision (actions {actions!r})")
    token_field = re.search(r'name="oauth_token"[^>]*?\bvalue="([^"]*)"', page)
    if not token_field or html.unescape(token_field.group(1)) != request_token:
        raise Failure("authorize page: no hidden oauth_token input carrying the request token")
    authenticity = re.search(r'name="session_authenticity_token"[^>]*?\bvalue="([^"]*)"', page)
    if not authenticity or not authenticity.group(1):
        raise Failure("authorize page: no session_authenticity_token input")
    for field in ("username", "password", "pin"):
        present = re.search(rf'name="{field}"', page) is not None
        if present == signed_in:
            state = "although signed in" if signed_in else "although not logged in"
            raise Failure(f"authorize page: {field} input {'shown' if present else 'missing'} {state}")
    return html.unescape(authenticity.group(1))


def decide(browser: requests.Session, base: str, request_token: str, authenticity: str,
           user: str, password: str, pin: str) -> requests.Response:
    return browser.post(
        f"{base}/ws/oauth/authorize/decision",
        data={
            "oauth_token": request_token,
            "session_authenticity_token": authenticity,
            "username": user,
            "password": password,
            "pin": pin,
            "oauthDecision": "allow",
        },
        allow_redirects=False,
        timeout=TIMEOUT,
    )


def authorize(browser: requests.Session, base: str, request_token: str,
              user: str, password: str, pin: str) -> str:
    """Leg 2: the user logs in and allows; returns the verifier from the callback redirect."""
    authenticity = authorize_page(browser, base, request_token)
    response = decide(browser, base, request_token, authenticity, user, password, pin)
    return verifier_from(response, request_token)


def authorize_signed_in(browser: requests.Session, base: str, request_token: str) -> str:
    """Leg 2 for a browser that is already signed in: allow, with the session's form token.
    The same decision with a forged form token must be refused first."""
    authenticity = authorize_page(browser, base, request_token, signed_in=True)
    data = {"oauth_token": request_token, "oauthDecision": "allow"}
    forged = browser.post(
        f"{base}/ws/oauth/authorize/decision",
        data={**data, "session_authenticity_token": "forged"},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    if "oauth_verifier" in forged.headers.get("Location", ""):
        raise Failure("authorize with a forged form token: redirected with an oauth_verifier")
    expect_status("authorize with a forged form token", forged, 403)
    response = browser.post(
        f"{base}/ws/oauth/authorize/decision",
        data={**data, "session_authenticity_token": authenticity},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    return verifier_from(response, request_token)


def verifier_from(response: requests.Response, request_token: str) -> str:
    """The verifier in the redirect to the client's callback."""
    expect_status("authorize", response, 302, 303)
    location = response.headers.get("Location", "")
    parts = urllib.parse.urlsplit(location)
    if urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")) != CALLBACK:
        raise Failure(f"authorize: expected a redirect to {CALLBACK}, got {redact(location)!r}")
    query = urllib.parse.parse_qs(parts.query)
    if query.get("oauth_token") != [request_token]:
        raise Failure("authorize: the callback does not carry the request token as oauth_token")
    verifier = query.get("oauth_verifier", [""])
    if len(verifier) != 1 or not verifier[0]:
        raise Failure("authorize: the callback carries no oauth_verifier")
    return verifier[0]


def refuse_wrong_password(browser: requests.Session, base: str, request_token: str,
                          user: str, pin: str) -> None:
    authenticity = authorize_page(browser, base, request_token)
    response = decide(browser, base, request_token, authenticity, user, "wrong password", pin)
    if "oauth_verifier" in response.headers.get("Location", ""):
        raise Failure("authorize with a wrong password: redirected with an oauth_verifier")
    expect_status("authorize with a wrong password", response, 401, 200)


def token_session(key: str, secret: str, request_token: str, request_secret: str,
                  verifier: str) -> OAuth1Session:
    return OAuth1Session(
        key,
        client_secret=secret,
        resource_owner_key=request_token,
        resource_owner_secret=request_secret,
        verifier=verifier,
    )


def exchange(base: str, key: str, secret: str, request_token: str, request_secret: str,
             verifier: str) -> tuple[str, str]:
    """Leg 3: the verified request token for an access token."""
    session = token_session(key, secret, request_token, request_secret, verifier)
    try:
        token = session.fetch_access_token(f"{base}/ws/oauth/token", timeout=TIMEOUT)
    except TokenRequestDenied as denied:
        raise Failure(f"token: expected HTTP 200, got {got(denied.response)}") from None
    if not token.get("oauth_token_secret"):
        raise Failure("token: the response carries no oauth_token_secret")
    if token["oauth_token"] == request_token:
        raise Failure("token: the access token is the request token")
    return token["oauth_token"], token["oauth_token_secret"]


def refuse_replayed_exchange(base: str, key: str, secret: str, request_token: str,
                             request_secret: str, verifier: str) -> None:
    session = token_session(key, secret, request_token, request_secret, verifier)
    try:
        session.fetch_access_token(f"{base}/ws/oauth/token", timeout=TIMEOUT)
    except TokenRequestDenied as denied:
        expect_status("token exchange replayed", denied.response, 401)
    else:
        raise Failure("token exchange replayed: expected HTTP 401, got a second access token")


# --- the protected resources ---------------------------------------------------------------


def read_resources(api: OAuth1Session, base: str, demographic_no: str) -> None:
    url = f"{base}/ws/services/demographics/{demographic_no}"
    demographic = expect_json("demographic", api.get(url, timeout=TIMEOUT))
    if not isinstance(demographic, dict):
        raise Failure(f"demographic: expected a JSON object, got {demographic!r:.200}")
    print(f"demographic: {json.dumps(demographic, sort_keys=True)}")
    if str(demographic.get("demographicNo")) != demographic_no:
        raise Failure(f"demographic: expected demographicNo {demographic_no}, got {demographic.get('demographicNo')!r}")

    last_name = demographic.get("lastName")
    if not last_name:
        raise Failure("quickSearch: the demographic has no lastName to search for")
    found = expect_json(
        "quickSearch",
        api.get(f"{base}/ws/services/demographics/quickSearch", params={"query": last_name}, timeout=TIMEOUT),
    )
    content = found.get("content") if isinstance(found, dict) else None
    if not isinstance(content, list):
        raise Failure(f"quickSearch: expected an object with a content array, got {json.dumps(found)[:200]!r}")
    numbers = [str(item.get("demographicNo")) if isinstance(item, dict) else str(item) for item in content]
    if demographic_no not in numbers:
        raise Failure(f"quickSearch: expected demographicNo {demographic_no} in content, got {numbers!r:.200}")
    print("quickSearch: found")

    authed = expect_json("checkIfAuthed", api.get(f"{base}/ws/services/status/checkIfAuthed", timeout=TIMEOUT))
    if not isinstance(authed, dict) or authed.get("success") is not True:
        raise Failure(f"checkIfAuthed: expected success true, got {json.dumps(authed)[:200]!r}")
    print("checkIfAuthed: ok")


# --- refusals ------------------------------------------------------------------------------


def signed_headers(url: str, key: str, secret: str, access: tuple[str, str], **client_options) -> dict:
    client = oauthlib.oauth1.Client(
        key,
        client_secret=secret,
        resource_owner_key=access[0],
        resource_owner_secret=access[1],
        **client_options,
    )
    _, headers, _ = client.sign(url, http_method="GET")
    return headers


def expect_refused(what: str, response: requests.Response, problem: str) -> None:
    """A 401 that names the problem, as OSCAR's OAuth filter words it."""
    expect_status(what, response, 401)
    if response.text.strip() != problem:
        raise Failure(f"{what}: expected the problem {problem!r}, got {response.text.strip()[:200]!r}")
    print(f"{what}: 401")


def refuse_tampered_signature(url: str, key: str, secret: str, access: tuple[str, str]) -> None:
    headers = signed_headers(url, key, secret, access)
    match = re.search(r'oauth_signature="([^"]*)"', headers["Authorization"])
    if not match or not match.group(1):
        raise Failure("tampered signature: oauthlib produced no oauth_signature")
    signature = match.group(1)
    tampered = ("B" if signature[0] == "A" else "A") + signature[1:]
    headers["Authorization"] = (
        headers["Authorization"][: match.start(1)] + tampered + headers["Authorization"][match.end(1):]
    )
    expect_refused("tampered signature", requests.get(url, headers=headers, timeout=TIMEOUT), "invalid_signature")


def refuse_replayed_nonce(url: str, key: str, secret: str, access: tuple[str, str]) -> None:
    headers = signed_headers(
        url, key, secret, access,
        nonce=f"fixednonce{secrets.token_hex(8)}",
        timestamp=str(int(time.time())),
    )
    expect_status("nonce first use", requests.get(url, headers=headers, timeout=TIMEOUT), 200)
    expect_refused("replayed nonce", requests.get(url, headers=headers, timeout=TIMEOUT), "nonce_used")


def refuse_stale_timestamp(url: str, key: str, secret: str, access: tuple[str, str]) -> None:
    headers = signed_headers(url, key, secret, access, timestamp=str(int(time.time()) - 3600))
    expect_refused("stale timestamp", requests.get(url, headers=headers, timeout=TIMEOUT), "timestamp_refused")


def refuse_no_authorization(url: str) -> None:
    expect_refused("no Authorization", requests.get(url, timeout=TIMEOUT), "parameter_absent")


def refuse_expired_token(browser: requests.Session, base: str, key: str, secret: str,
                         demographic_no: str) -> None:
    """A client whose tokens live 2 seconds: the token works at once and is refused after 3.
    The browser signed in during the first flow allows it with its session."""
    try:
        request_token, request_secret = initiate(base, key, secret)
        verifier = authorize_signed_in(browser, base, request_token)
        print("authorize signed in: ok")
        access = exchange(base, key, secret, request_token, request_secret, verifier)
    except Failure as failure:
        raise Failure(f"short-lived client: {failure}") from None
    api = OAuth1Session(key, client_secret=secret, resource_owner_key=access[0], resource_owner_secret=access[1])
    url = f"{base}/ws/services/demographics/{demographic_no}"
    expect_status("short-lived token before it expires", api.get(url, timeout=TIMEOUT), 200)
    time.sleep(3)
    expect_refused("expired token", api.get(url, timeout=TIMEOUT), "token_expired")


def run(base: str, key: str, secret: str, short_key: str, short_secret: str,
        user: str, password: str, pin: str, demographic_no: str) -> None:
    request_token, request_secret = initiate(base, key, secret)
    print("initiate: ok")

    browser = requests.Session()
    refuse_wrong_password(browser, base, request_token, user, pin)
    print("authorize with a wrong password: refused")
    verifier = authorize(browser, base, request_token, user, password, pin)
    print("authorize: ok")

    access = exchange(base, key, secret, request_token, request_secret, verifier)
    print("token: ok")
    refuse_replayed_exchange(base, key, secret, request_token, request_secret, verifier)
    print("token exchange replayed: refused")

    api = OAuth1Session(key, client_secret=secret, resource_owner_key=access[0], resource_owner_secret=access[1])
    read_resources(api, base, demographic_no)

    url = f"{base}/ws/services/demographics/{demographic_no}"
    refuse_tampered_signature(url, key, secret, access)
    refuse_replayed_nonce(url, key, secret, access)
    refuse_stale_timestamp(url, key, secret, access)
    refuse_no_authorization(url)
    refuse_expired_token(browser, base, short_key, short_secret, demographic_no)


def main() -> int:
    if len(sys.argv) != 10:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    base, key, secret, short_key, short_secret, user, password, pin, demographic_no = sys.argv[1:10]
    try:
        run(base.rstrip("/"), key, secret, short_key, short_secret, user, password, pin, demographic_no)
    except Failure as failure:
        print(failure)
        return 1
    except requests.RequestException as error:
        print(f"request failed: {type(error).__name__}: {redact(str(error))[:200]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
