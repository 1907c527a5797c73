"""`validate --check-credentials`: one harmless authenticated request, and what it means.

Called by connector/cli.py after the config is valid. With a `secret_key` the request
reads the status of batch job 0 (a read in the "Others" bucket that changes nothing);
without one it posts an empty object to Send Events, which Gameball refuses as a
payload error (3xxx) once the key is accepted, so nothing can be stored. The answer is
read with `classify`'s table: 401/403 and the 1xxx, 6xxx, 8xxx codes are printed with
the reference's meaning. The keys are never printed.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.config import GameballSettings
from connector.gameball import EVENTS_PATH, Action, Answer, GameballClient, classify
from connector.gameball_codes import BY_CODE

# What each refusal means for this connector, after the reference's own words.
_MEANINGS = {
    1000: "Unauthorized: the apikey is not valid here. Test and Live keys share the base "
    "URL (tutorials--environments.mdx): check that the key belongs to the account and "
    "environment you mean",
    1001: "Secret Key Required: the account needs the secretkey on this request (High "
    "Security Mode asks for it on every request): set gameball.secret_key",
    1002: "Forbidden: the keys are valid but have no permission for this resource",
    6000: "Gameball Disabled: Gameball is disabled for this account",
    8000: "Feature Unavailable: the account's plan does not include this feature",
}


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    ok: bool
    message: str


def describe(answer: Answer) -> CredentialCheck:
    """Turn the check's answer into a verdict and one line for a person. Pure."""
    verdict = classify(answer)
    code = answer.code
    if answer.status is None:
        return CredentialCheck(False, f"no answer from Gameball ({answer.error})")
    if verdict.action is Action.HALT:
        if code is not None and code in _MEANINGS:
            meaning = _MEANINGS[code]
        elif code is not None and code in BY_CODE:
            meaning = BY_CODE[code].name
        elif verdict.reason == "not_found":
            meaning = "no Gameball API at this address: check gameball.base_url"
        elif verdict.reason == "auth":
            meaning = "the credentials were refused (no Gameball error code in the answer)"
        else:
            meaning = f"unexpected answer ({verdict.reason})"
        label = f"HTTP {answer.status}" + (f" code {code}" if code is not None else "")
        return CredentialCheck(False, f"credentials refused: {label}: {meaning}")
    if verdict.action is Action.RETRY:
        return CredentialCheck(False, f"Gameball did not decide ({answer.describe()}): try again")
    # Accepted, or a 4xx about the (deliberately empty) request: the keys passed.
    return CredentialCheck(True, f"credentials accepted (HTTP {answer.status})")


def check(settings: GameballSettings) -> CredentialCheck:
    """Make the one request and describe its answer (network errors included)."""
    client = GameballClient(settings, pool_size=1)
    try:
        if settings.secret_key is not None:
            answer = client.request("GET", client.status_path(0))
        else:
            answer = client.request("POST", EVENTS_PATH, b"{}")
    finally:
        client.close()
    return describe(answer)
