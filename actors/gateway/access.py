"""The gateway's auth: who a request is made by, tokens, logins, password hashing, the auth store's view.

Rules (see actors/auth): while auth is enabled, every request but a login, the status ones and
a hub's token check carries a token (``user name is empty`` if not, ``invalid auth token`` if
unknown or expired) whose user must hold what the request needs (``permission denied``). A
gRPC door's certificate token (tokens.py) names the user of a verified client certificate; a
user it names who does not exist is denied, as etcd denies an unknown Common Name.
The user and the auth revision checked against travel in the proposal, so apply checks again
if the store changed; a linearizable read's permission is checked after its ReadIndex wait, as
etcd does (``routing.py``), so a permission revoked before the read began is honoured on every
member, and ``permission denied`` means the cluster had a quorum. A login checks the password
here (rate-limited, see tokens.py), mints a random token and proposes only its digest; the
client gets the token once the login is applied. With JWT tokens (see actors/auth/jwt.py) the
login is answered here with a signed token, which every member checks alone and refuses once
the auth store has moved past it. Passwords are hashed here before ``user add`` / ``passwd``
are proposed.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from actors.auth.jwt import JwtTokens
from actors.auth.passwords import MAX_PASSWORD_BYTES, hash_password, verify_password
from actors.auth.perms import Anyone, Need, needs
from actors.auth.store import AuthView
from actors.auth.tokens import TokenKeeper, cert_user, digest
from actors.gateway.replies import Replies
from actors.gateway.requests import is_linearizable
from proto_schemas.auth import (
    AuthCheckRequest,
    AuthCheckResponse,
    AuthenticateRequest,
    AuthState,
    TokenGranted,
    UserAddRequest,
    UserChangePasswordRequest,
)
from proto_schemas.errors import ErrorCode, EtcdzError


class Access(Replies):
    """Tokens to users, the users' rights, logins and the auth store as the backend reports it."""

    def _authorize(self, token: str, request: Any, now: float) -> str:
        """The user a client request is made by ("" while auth is disabled or for what anyone
        may do); raises what etcd answers a request without the right."""
        if not self.auth.enabled:
            return ""
        wanted = needs(request)
        if isinstance(wanted, Anyone):
            return ""
        user = self._token_user(token, now)
        if not self._needs_read_index(request):  # a linearizable read is checked after ReadIndex
            self.auth.check(user, wanted)
        return user

    def _token_user(self, token: str, now: float) -> str:
        if not token:
            raise EtcdzError(ErrorCode.USER_EMPTY)
        certified = cert_user(self.cert_secret, token)
        if certified is not None:  # a verified TLS certificate's Common Name (a gRPC door's word)
            if certified not in self.auth.users:
                raise EtcdzError(ErrorCode.PERMISSION_DENIED)  # etcd: no such user to check
            return certified
        if self.jwt is not None:
            return self._jwt_user(self.jwt, token)
        user = self.tokens.user(token, now)
        if user is None or user not in self.auth.users:
            raise EtcdzError(ErrorCode.INVALID_AUTH_TOKEN)
        return user

    def _jwt_user(self, jwt: JwtTokens, token: str) -> str:
        claims = jwt.check(token)
        if claims is None or claims[0] not in self.auth.users:
            raise EtcdzError(ErrorCode.INVALID_AUTH_TOKEN)
        user, revision = claims
        if revision < self.auth.revision:  # issued before the last auth change (etcd's rule)
            raise EtcdzError(ErrorCode.AUTH_OLD_REVISION)
        return user

    def _auth_check(self, request: AuthCheckRequest, now: float) -> AuthCheckResponse:
        """A watch hub asks whether a watcher's token may read what it wants to watch."""
        user = ""
        if self.auth.enabled:
            user = self._token_user(request.token, now)
            self.auth.check(user, [Need(request.key, request.range_end, False)])
        return AuthCheckResponse(header=self.header(self.revision), user=user)

    def _login(
        self, request: AuthenticateRequest, now: float, source: str
    ) -> tuple[AuthenticateRequest, str]:
        """Check a password (slow on purpose, so rate-limited) and mint the token whose digest
        is proposed."""
        if not self.auth.enabled:
            raise EtcdzError(ErrorCode.AUTH_NOT_ENABLED)
        if not self.logins.allow(request.name, source, now):
            raise EtcdzError(ErrorCode.TOO_MANY_REQUESTS)
        record = self.auth.users.get(request.name)
        if (
            record is None
            or not record.hashed_password
            or not verify_password(request.password, record.hashed_password)
        ):
            self.logins.failed(request.name, source, now)
            raise EtcdzError(ErrorCode.AUTH_FAILED)
        if self.jwt is not None:
            return request, self.jwt.issue(request.name, self.auth.revision)
        token = base64.urlsafe_b64encode(self._random(32)).decode().rstrip("=")
        logged = AuthenticateRequest(
            name=request.name, token_digest=digest(token), auth_revision=self.auth.revision
        )
        return logged, token

    def _hash(self, request: UserAddRequest | UserChangePasswordRequest) -> Any:
        """The request as proposed: the password replaced by its hash."""
        if isinstance(request, UserAddRequest) and request.no_password:
            return dataclasses.replace(request, password="", hashed_password="")
        if not request.password:
            raise EtcdzError(ErrorCode.BAD_REQUEST, "a password is required (or no_password)")
        if len(request.password.encode()) > MAX_PASSWORD_BYTES:
            raise EtcdzError(ErrorCode.BAD_REQUEST, f"a password is at most {MAX_PASSWORD_BYTES} bytes")
        hashed = hash_password(request.password, self._random(16))
        return dataclasses.replace(request, password="", hashed_password=hashed)

    def _set_auth(self, state: AuthState | None, tokens: list[TokenGranted], now: float) -> None:
        if state is not None and state.revision >= self.auth.revision:
            if self.auth.enabled and not state.enabled:  # as etcd: disabling forgets every token
                self.tokens = TokenKeeper(self.tokens.ttl_s)
            self.auth = AuthView(state)
        for granted in tokens:
            if granted.token_digest:
                self.tokens.grant(granted.user, granted.token_digest, now)
            else:
                self.tokens.revoke_user(granted.user)

    def _needs_read_index(self, request: Any) -> bool:
        return is_linearizable(request) and not self.unsafe_local_reads
