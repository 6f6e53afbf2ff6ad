"""Real signing keys made for the tests: RSA and EC JWTs, JWKS documents, X.509 certificates."""

from __future__ import annotations

import datetime
import json
import time
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class SigningKey:
    """A private key with its key id, signing JWTs the way an identity provider does."""

    kid: str
    algorithm: Literal["RS256", "ES256"]
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    @classmethod
    def rsa(cls, kid: str) -> SigningKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def ec(cls, kid: str) -> SigningKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def public_jwk(self) -> dict[str, Any]:
        public = self.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(
        self, claims: dict[str, Any], *, kid: str | None = None, algorithm: str | None = None
    ) -> str:
        return jwt.encode(
            claims,
            self.private_key,
            algorithm=algorithm or self.algorithm,
            headers={"kid": kid or self.kid},
        )

    def certificate_pem(self) -> str:
        """A self-signed certificate of the public key, as Google publishes Firebase signers."""
        assert isinstance(self.private_key, rsa.RSAPrivateKey)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.test")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.private_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self.private_key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM).decode()


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [key.public_jwk() for key in keys]}


def claims(
    issuer: str,
    audience: str | list[str],
    *,
    sub: str | None = "user-1",
    lifetime: float = 300,
    **extra: Any,
) -> dict[str, Any]:
    """The claims of a JWT valid from now for `lifetime` seconds (negative: already expired)."""
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + int(lifetime),
        **extra,
    }
    if sub is not None:
        values["sub"] = sub
    return values


def json_bytes(document: Any) -> bytes:
    return json.dumps(document).encode()
