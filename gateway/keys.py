"""API keys: issued once in plaintext, stored only as salted HMAC-SHA256 hashes, compared in constant time.

A key reads `hgw_<id>_<secret>`: the id (public, in the ledger and in `keys list`) finds the row, the
256-bit secret is what is hashed. Secrets this long need no slow password hash; the salt keeps equal
secrets from having equal hashes. Verified keys are cached in memory and the cache is refreshed from the
database in the background, so a revocation made with `gateway keys revoke` reaches running gateways
within seconds, and no request waits on the database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from gateway.database import Database

PREFIX = "hgw"


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant: str
    name: str
    created: float
    revoked: float | None = None
    daily_usd: float | None = None
    monthly_usd: float | None = None
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class _Stored:
    key: ApiKey
    salt: bytes
    digest: bytes


def _digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode(), hashlib.sha256).digest()


def split_key(plaintext: str) -> tuple[str, str] | None:
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


_COLUMNS = "id, tenant, name, salt, hash, created, revoked, daily_usd, monthly_usd, rpm, tpm"


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, _Stored] = {}
        self._configured = False
        self.loaded_at = 0.0

    def create(
        self,
        tenant: str,
        name: str,
        *,
        daily_usd: float | None = None,
        monthly_usd: float | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
    ) -> tuple[ApiKey, str]:
        """Store a new key; return it with its plaintext, which is never stored or shown again."""
        key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_bytes(16)
        key = ApiKey(key_id, tenant, name, time.time(), None, daily_usd, monthly_usd, rpm, tpm)
        self.db.execute(
            f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id,
                tenant,
                name,
                salt.hex(),
                _digest(salt, secret).hex(),
                key.created,
                None,
                daily_usd,
                monthly_usd,
                rpm,
                tpm,
            ),
        )
        return key, f"{PREFIX}_{key_id}_{secret}"

    def revoke(self, key_id: str) -> bool:
        before = {k.id for k in self.list_keys() if k.revoked is None}
        self.db.execute(
            "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id)
        )
        return key_id in before

    def list_keys(self) -> list[ApiKey]:
        return [s.key for s in self._read()]

    def _read(self) -> list[_Stored]:
        rows = self.db.query(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created")
        return [
            _Stored(
                ApiKey(r[0], r[1], r[2], r[5], r[6], r[7], r[8], r[9], r[10]),
                bytes.fromhex(r[3]),
                bytes.fromhex(r[4]),
            )
            for r in rows
        ]

    def refresh(self) -> None:
        """Reload the cache from the database (call from a worker thread)."""
        stored = self._read()
        self._cache = {s.key.id: s for s in stored if s.key.revoked is None}
        self._configured = bool(stored)
        self.loaded_at = time.monotonic()

    def configured(self) -> bool:
        """True once any key was ever issued: revoking every key must not reopen the gateway."""
        return self._configured

    def verify(self, plaintext: str) -> ApiKey | None:
        """The key this plaintext proves, or None. Constant-time in the secret."""
        parts = split_key(plaintext)
        stored = self._cache.get(parts[0]) if parts else None
        if parts is None or stored is None:
            # Same work as a real check, so timing does not tell whether an id exists.
            hmac.compare_digest(_digest(b"0" * 16, plaintext), b"\0" * 32)
            return None
        return stored.key if hmac.compare_digest(_digest(stored.salt, parts[1]), stored.digest) else None
