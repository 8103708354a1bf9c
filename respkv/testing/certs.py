"""A throwaway test PKI for TLS tests: :func:`make_certificates`.

Certificates are made fresh for each session (never checked in): a CA, a server
certificate for the loopback names signed by it, a client certificate signed by it, and a
second, unrelated CA for "wrong CA" tests. Keys are ECDSA P-256: fast to make, and every
TLS library accepts them. The ``cryptography`` package makes them when installed, the
``openssl`` command otherwise.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
from pathlib import Path

from respkv.testing.servers import TlsFiles

__all__ = ["TLS_CERT_DAYS", "TLS_SERVER_NAMES", "CertificateSet", "make_certificates"]

#: Names the test server certificate is valid for.
TLS_SERVER_NAMES = ("localhost", "127.0.0.1", "::1")
#: Validity of the generated certificates (a test session is far shorter).
TLS_CERT_DAYS = 2


@dataclasses.dataclass(frozen=True)
class CertificateSet:
    """Paths of a generated test PKI (PEM files)."""

    ca_file: str
    server_cert_file: str
    server_key_file: str
    client_cert_file: str
    client_key_file: str
    other_ca_file: str

    def server_files(self, auth_clients: str = "optional") -> TlsFiles:
        """What :class:`~respkv.testing.servers.LocalServer` needs to serve TLS with these."""
        return TlsFiles(
            cert_file=self.server_cert_file,
            key_file=self.server_key_file,
            ca_file=self.ca_file,
            client_cert_file=self.client_cert_file,
            client_key_file=self.client_key_file,
            auth_clients=auth_clients,
        )


def make_certificates(directory: Path, tool: str = "auto") -> CertificateSet:
    """Generate a test PKI under ``directory`` with ``cryptography`` or ``openssl``.

    ``tool`` is ``auto`` (``cryptography`` when importable), ``cryptography`` or ``openssl``.
    """
    if tool not in ("auto", "cryptography", "openssl"):
        raise ValueError(f"tool must be auto, cryptography or openssl, not {tool!r}")
    if tool == "auto":
        tool = "cryptography" if importlib.util.find_spec("cryptography") else "openssl"
    directory.mkdir(parents=True, exist_ok=True)
    make = _certs_with_cryptography if tool == "cryptography" else _certs_with_openssl
    return make(directory)


def _certs_with_cryptography(d: Path) -> CertificateSet:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    def build(
        name: str,
        key: ec.EllipticCurvePrivateKey,
        issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
        usage: x509.ObjectIdentifier | None,
    ) -> x509.Certificate:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer_name, signer = issuer if issuer else (subject, key)
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=TLS_CERT_DAYS))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), True)
        )
        if issuer is None:
            b = b.add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=True, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )  # fmt: skip
        if usage is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            alt: list[x509.GeneralName] = []
            for n in TLS_SERVER_NAMES:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    alt.append(x509.DNSName(n))
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return b.sign(signer, hashes.SHA256())

    def pem(cert: x509.Certificate, path: Path) -> str:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return str(path)

    ca_key, other_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = build("respkv test CA", ca_key, None, None)
    other = build("respkv unrelated CA", other_key, None, None)
    files: dict[str, str] = {
        "ca_file": pem(ca, d / "ca.pem"),
        "other_ca_file": pem(other, d / "other-ca.pem"),
    }
    for role, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        write_key(key, d / f"{role}.key")
        cert = build(f"respkv test {role}", key, (ca.subject, ca_key), usage)
        files[f"{role}_cert_file"] = pem(cert, d / f"{role}.pem")
        files[f"{role}_key_file"] = str(d / f"{role}.key")
    return CertificateSet(**files)


def _certs_with_openssl(d: Path) -> CertificateSet:
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("neither the cryptography package nor the openssl command is available")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    days = str(TLS_CERT_DAYS)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for name, cn in (("ca", "respkv test CA"), ("other-ca", "respkv unrelated CA")):
        run("req", "-x509", *curve, "-keyout", str(d / f"{name}.key"), "-out",
            str(d / f"{name}.pem"), "-days", days, "-subj", f"/CN={cn}")  # fmt: skip
    alt = ",".join(
        f"IP:{n}" if n[0].isdigit() or ":" in n else f"DNS:{n}" for n in TLS_SERVER_NAMES
    )
    for role, ext in (
        ("server", f"extendedKeyUsage=serverAuth\nsubjectAltName={alt}\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{role}.ext").write_text(ext)
        run("req", *curve, "-keyout", str(d / f"{role}.key"), "-out", str(d / f"{role}.csr"),
            "-subj", f"/CN=respkv test {role}")  # fmt: skip
        run("x509", "-req", "-in", str(d / f"{role}.csr"), "-CA", str(d / "ca.pem"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / f"{role}.pem"),
            "-days", days, "-extfile", str(d / f"{role}.ext"))  # fmt: skip
    return CertificateSet(
        ca_file=str(d / "ca.pem"),
        server_cert_file=str(d / "server.pem"),
        server_key_file=str(d / "server.key"),
        client_cert_file=str(d / "client.pem"),
        client_key_file=str(d / "client.key"),
        other_ca_file=str(d / "other-ca.pem"),
    )
