"""C2PA signing: sign labkit outputs with the user's certificate (content credentials), and verify them.

Optional: it needs c2pa-python (`pip install "labkit[c2pa]"`); without it everything else in
labkit works and these functions raise `MissingDependency` saying how to install it.

    keys = keygen("c2pa")                             # a local test CA and a signer it issued
    identity = load_identity(keys.cert, keys.key)     # checked now, by signing a 1-pixel PNG
    sign_file("txt2img-42-00.png", identity)          # the manifest carries the labkit record
    v = verify("txt2img-42-00.png", trust=keys.ca)    # v.state: "Trusted", "Valid" or "Invalid"

The manifest of a signed output has two assertions: `c2pa.actions.v2` with a `c2pa.created`
action whose `digitalSourceType` is IPTC's `trainedAlgorithmicMedia` (media made by a trained
generative model) and labkit as the software agent; and `labkit.provenance` with the models and
every asset of the licence chain (id, revision, hash, licence), the derived output terms, the plan
(prompt, seed, steps …), the run id and the versions — the same record the file embeds, now
covered by the signature.

Validation states (c2pa-rs): "Invalid" when the signature or a content hash does not check out
(pixels changed after signing, say); "Valid" when they do but the signer is not on a trust list
(any local certificate); "Trusted" when the signer chains up to a trust anchor (pass `trust=`, for
instance the `ca.pem` that `keygen` writes). A self-signed signing certificate is rejected by
c2pa, which is why `keygen` makes a CA and a leaf certificate it issued.

Nothing is imported at module level beyond the standard library: c2pa and cryptography are
imported inside the functions that need them.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labkit.deps import require
from labkit.errors import ConfigError, CredentialsError, InvalidParameter, MissingDependency

if TYPE_CHECKING:  # pragma: no cover
    from labkit.config import LabConfig

INSTALL = 'pip install "labkit[c2pa]"'
#: IPTC digital source type of media created by a trained generative model.
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: Label of the assertion that carries labkit's provenance.
PROVENANCE_LABEL = "labkit.provenance"
ACTIONS_LABEL = "c2pa.actions.v2"
#: Output formats labkit signs, by suffix.
SIGNABLE = {".png": "image/png", ".mp4": "video/mp4", ".gif": "image/gif"}
#: Formats signed automatically when a certificate is configured.
AUTO_SIGN = (".png", ".mp4")
#: Validation codes that only say the signer is not on a trust list (state "Valid", not "Trusted").
UNTRUSTED_CODES = ("signingCredential.untrusted",)

CA_FILE = "ca.pem"
CERT_FILE = "signer.pem"
KEY_FILE = "signer.key"


def _c2pa():
    return require("c2pa", feature="Content credentials (C2PA)", fix=INSTALL)


def _crypto():
    require("cryptography", feature="Making C2PA keys", fix=INSTALL)


def available() -> bool:
    """Whether c2pa-python can be imported here."""
    try:
        _c2pa()
    except MissingDependency:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# keygen
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    """What `keygen` wrote: the CA certificate (trust anchor), the signer's chain and its key."""

    folder: Path
    ca: Path
    cert: Path
    key: Path
    subject: str
    not_after: str

    def toml(self) -> str:
        """The `labkit.toml` section that makes labkit sign every PNG and MP4 output with this key."""
        return f'[c2pa]\ncert = "{self.cert}"\nkey = "{self.key}"\ntrust = "{self.ca}"\n'

    def to_dict(self) -> dict[str, str]:
        return {"folder": str(self.folder), "ca": str(self.ca), "cert": str(self.cert), "key": str(self.key),
                "subject": self.subject, "not_after": self.not_after, "toml": self.toml()}


def keygen(folder: str | Path, *, common_name: str = "labkit local test signer", days: int = 365,
           overwrite: bool = False) -> KeyPair:
    """Make a local test CA and a signing certificate it issued (ECDSA P-256, ES256) in `folder`.

    Writes `ca.pem` (the CA certificate: pass it as `trust` to verify as "Trusted"), `signer.pem`
    (the signer's certificate followed by the CA's: the chain C2PA embeds), `signer.key` (PKCS#8,
    readable by the owner only) and a `.gitignore` that keeps the folder out of git. The CA's own
    key is not kept: it signs the leaf and is discarded, so it cannot issue anything else.

    The leaf carries what C2PA asks of a signing certificate: not a CA (basicConstraints),
    keyUsage digitalSignature, extendedKeyUsage emailProtection and documentSigning, subject and
    authority key identifiers. It is for trying content credentials offline: nobody else trusts it.
    """
    if days < 1:
        raise InvalidParameter(f"days={days}: a certificate must be valid for at least one day.", value=days,
                               fix="pass days >= 1.")
    if not common_name or not common_name.strip():
        raise InvalidParameter("Empty common name.", value=common_name, fix="name the signer, e.g. 'my lab'.")
    _crypto()
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

    out = Path(folder).expanduser().resolve()
    paths = {"ca": out / CA_FILE, "cert": out / CERT_FILE, "key": out / KEY_FILE}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise InvalidParameter(f"{', '.join(existing)} already exist(s).", value=str(out),
                               fix="pick another folder (--out), or pass overwrite=True (--force) to replace them.")

    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(minutes=5)  # tolerate a little clock skew
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "labkit local test (not trusted)")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "labkit local test CA"), org])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(now + dt.timedelta(days=days + 1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=True, crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name.strip()), org])
    document_signing = ObjectIdentifier("1.3.6.1.5.5.7.3.36")  # id-kp-documentSigning (RFC 9336)
    leaf = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, document_signing]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))

    pem = serialization.Encoding.PEM
    out.mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("# keys made by `labkit compliance keygen`: never commit them\n*\n")
    _write(paths["ca"], ca_cert.public_bytes(pem))
    _write(paths["cert"], leaf.public_bytes(pem) + ca_cert.public_bytes(pem))
    _write(paths["key"], key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
           private=True)
    return KeyPair(folder=out, ca=paths["ca"], cert=paths["cert"], key=paths["key"], subject=common_name.strip(),
                   not_after=leaf.not_valid_after_utc.isoformat())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    from labkit.outputs import atomic_write_bytes

    atomic_write_bytes(path, data, mode=0o600 if private else 0o644)  # keys are private, certificates public


# ---------------------------------------------------------------------------------------------
# The signing identity
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningIdentity:
    """A checked certificate chain and key: what signs outputs. Build it with `load_identity`."""

    cert: Path
    key: Path
    alg: str
    subject: str
    issuer: str
    not_after: str
    tsa_url: str | None = None
    chain_pem: bytes = field(default=b"", repr=False)
    key_pem: bytes = field(default=b"", repr=False)

    def signer(self, *, timestamp: bool = True):
        """A c2pa `Signer` for one signing (c2pa-python builders consume what they sign with)."""
        c2pa = _c2pa()
        info = c2pa.C2paSignerInfo(self.alg.encode(), self.chain_pem, self.key_pem,
                                   self.tsa_url.encode() if (timestamp and self.tsa_url) else None)
        try:
            return c2pa.Signer.from_info(info)
        except c2pa.C2paError as e:
            raise CredentialsError(f"c2pa cannot make a signer from {self.cert} and {self.key}: {e}.",
                                   value=str(self.cert), fix=_KEY_FIX) from e

    def to_dict(self) -> dict[str, Any]:
        return {"cert": str(self.cert), "key": str(self.key), "alg": self.alg, "subject": self.subject,
                "issuer": self.issuer, "not_after": self.not_after, "tsa_url": self.tsa_url}


_KEY_FIX = ("use a certificate chain issued by a CA with its private key (PEM), e.g. the ones "
            "`labkit compliance keygen` writes")


def _read(path: str | Path, what: str, setting: str) -> tuple[Path, bytes]:
    p = Path(path).expanduser()
    if p.is_dir():
        names = sorted(f.name for f in p.glob("*.pem"))
        raise InvalidParameter(f"The C2PA {what} {str(p)!r} is a folder, not a PEM file.", value=str(p),
                               fix=f"point {setting} at the file inside it"
                                   + (f" (it holds {', '.join(names)})." if names else "."))
    if not p.is_file():
        raise InvalidParameter(f"The C2PA {what} {str(p)!r} does not exist.", value=str(p),
                               fix=f"make one with `labkit compliance keygen`, or point {setting} at yours.")
    return p.resolve(), p.read_bytes()


def load_identity(cert: str | Path, key: str | Path, *, tsa_url: str | None = None,
                  check: bool = True) -> SigningIdentity:
    """Read and check a signing certificate chain and its private key (both PEM).

    Checks, each failing with a `CredentialsError` that names the file and the fix: the chain and
    the key parse; the key belongs to the first certificate; that certificate is valid now and is
    not self-signed (C2PA rejects self-signed signers); the key type maps to a C2PA algorithm
    (EC P-256/384/521 → ES256/384/512, Ed25519, RSA → PS256). With `check` (the default) a
    1-pixel PNG is signed in memory too, so whatever else c2pa refuses (extended key usage…)
    shows up here, before any render.
    """
    _c2pa()
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    cert_path, chain_pem = _read(cert, "certificate", "[c2pa] cert (or LABKIT_C2PA_CERT)")
    key_path, key_pem = _read(key, "private key", "[c2pa] key (or LABKIT_C2PA_KEY)")
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as e:
        raise CredentialsError(f"{cert_path} is not a PEM certificate chain: {e}.", value=str(cert_path),
                               fix=_KEY_FIX) from e
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError as e:  # encrypted
        raise CredentialsError(f"{key_path} is encrypted; labkit signs with an unencrypted key.",
                               value=str(key_path),
                               fix=f"write a decrypted copy readable only by you: openssl pkey -in {key_path} "
                                   "-out signer.key") from e
    except ValueError as e:
        raise CredentialsError(f"{key_path} is not a PEM private key: {e}.", value=str(key_path),
                               fix=_KEY_FIX) from e
    leaf = chain[0]
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if (leaf.public_key().public_bytes(serialization.Encoding.DER, pub)
            != private.public_key().public_bytes(serialization.Encoding.DER, pub)):
        raise CredentialsError(f"The key {key_path} does not belong to the certificate {cert_path}.",
                               value=str(key_path), fix="pass the key the certificate was issued for.")
    from cryptography.x509.oid import NameOID

    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = str(names[0].value) if names else leaf.subject.rfc4514_string()
    if leaf.issuer == leaf.subject:
        raise CredentialsError(f"The certificate {cert_path} ({subject}) is self-signed, which C2PA rejects.",
                               value=str(cert_path),
                               fix="sign with a certificate a CA issued; for local tests "
                                   "`labkit compliance keygen` makes a CA and a signer.")
    now = dt.datetime.now(dt.UTC)
    if not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
        raise CredentialsError(
            f"The certificate {cert_path} is valid from {leaf.not_valid_before_utc:%Y-%m-%d} to "
            f"{leaf.not_valid_after_utc:%Y-%m-%d}, not now.", value=str(cert_path),
            fix="renew it (for a local test key: `labkit compliance keygen --force`).")
    if isinstance(private, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(private.curve.name)
    elif isinstance(private, ed25519.Ed25519PrivateKey):
        alg = "ed25519"
    elif isinstance(private, rsa.RSAPrivateKey):
        alg = "ps256"
    else:
        alg = None
    if alg is None:
        raise CredentialsError(f"C2PA cannot sign with the key type of {key_path} ({type(private).__name__}).",
                               value=str(key_path), fix="use an EC P-256/P-384/P-521, Ed25519 or RSA key.")
    identity = SigningIdentity(cert=cert_path, key=key_path, alg=alg, subject=subject,
                               issuer=leaf.issuer.rfc4514_string(),
                               not_after=leaf.not_valid_after_utc.isoformat(), tsa_url=tsa_url or None,
                               chain_pem=chain_pem, key_pem=key_pem)
    if check:
        _test_sign(identity)
    return identity


def _test_sign(identity: SigningIdentity) -> None:
    from PIL import Image

    c2pa = _c2pa()
    src = io.BytesIO()
    Image.new("RGB", (1, 1)).save(src, format="PNG")
    src.seek(0)
    try:
        builder = c2pa.Builder(_manifest({}, "check.png"))
        builder.sign(identity.signer(timestamp=False), "image/png", src, io.BytesIO())
    except c2pa.C2paError as e:
        raise CredentialsError(f"c2pa refuses to sign with {identity.cert} ({identity.subject}): {e}.",
                               value=str(identity.cert),
                               fix="C2PA needs a CA-issued certificate with keyUsage digitalSignature and "
                                   "extendedKeyUsage emailProtection or documentSigning; for local tests "
                                   "`labkit compliance keygen` makes one.") from e


def identity_from_config(config: LabConfig, *, check: bool = True) -> SigningIdentity | None:
    """The signing identity `config` names (`[c2pa] cert` / `key`, `LABKIT_C2PA_CERT` / `_KEY`); None
    when it names none. Naming only one of the two is a `ConfigError`."""
    cert, key = config.c2pa_cert, config.c2pa_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        have, missing = ("cert", "key") if key is None else ("key", "cert")
        raise ConfigError(f"C2PA signing is half configured: a {have} is set ({cert or key}) but no {missing}.",
                          value=str(cert or key),
                          fix=f"set [c2pa] {missing} in labkit.toml (or LABKIT_C2PA_{missing.upper()}), "
                              f"or unset the {have} to stop signing.")
    return load_identity(cert, key, tsa_url=config.c2pa_tsa_url, check=check)


# ---------------------------------------------------------------------------------------------
# Signing
# ---------------------------------------------------------------------------------------------


def provenance_assertion(record: Mapping[str, Any]) -> dict[str, Any]:
    """The `labkit.provenance` assertion data of an output's record: models and every asset with its
    licence, the derived terms, the plan and seed, the run, the versions."""
    from labkit.compliance.terms import DISCLAIMER

    plan = dict(record.get("plan") or {})
    model = record.get("model") or {}
    prov = record.get("provenance") or {}
    terms = prov.get("terms") or {}
    licences = sorted({str(s.get("licence_id")) for s in terms.get("sources", []) if s.get("licence_id")})
    data = {
        "generator": "labkit",
        "run_id": record.get("run_id"),
        "index": record.get("index"),
        "seed": plan.get("seed"),
        "plan": plan,
        "model": {k: model.get(k) for k in ("id", "revision", "hash", "licence", "family", "pipeline")
                  if model.get(k) is not None},
        "assets": list(prov.get("assets") or []),
        "licences": licences,
        "terms": {k: terms[k] for k in ("commercial", "research_only", "attribution", "restrictions",
                                        "share_alike", "non_commercial", "unknown") if k in terms}
        | {"text": record.get("terms") or terms.get("text") or ""},
        "compliance": {k: (prov.get("compliance") or {}).get(k) for k in ("mode", "action")},
        "versions": dict(record.get("versions") or {}),
        "disclaimer": DISCLAIMER,
    }
    # CBOR inside the manifest takes JSON values; anything else becomes its string.
    return json.loads(json.dumps({k: v for k, v in data.items() if v is not None}, default=str))


def _manifest(record: Mapping[str, Any], title: str, digital_source_type: str = TRAINED_ALGORITHMIC_MEDIA
              ) -> dict[str, Any]:
    from labkit.version import __version__

    agent = {"name": "labkit", "version": __version__}
    plan = record.get("plan") or {}
    model = (record.get("model") or {}).get("id") or plan.get("model")
    action: dict[str, Any] = {"action": "c2pa.created", "digitalSourceType": digital_source_type,
                              "softwareAgent": agent}
    if model:
        action["description"] = f"rendered by labkit with {model}"
    return {
        "claim_generator_info": [agent],
        "title": title,
        "assertions": [
            {"label": ACTIONS_LABEL, "data": {"actions": [action]}},
            {"label": PROVENANCE_LABEL, "data": provenance_assertion(record)},
        ],
    }


def _format(path: Path) -> str:
    fmt = SIGNABLE.get(path.suffix.lower())
    if fmt is None:
        raise InvalidParameter(f"labkit does not sign {path.suffix or 'extension-less'} files ({path}).",
                               value=str(path), fix=f"sign one of labkit's outputs: {', '.join(SIGNABLE)}.")
    return fmt


def sign_file(path: str | Path, identity: SigningIdentity, *, record: Mapping[str, Any] | None = None,
              out: str | Path | None = None, replace: bool = False,
              digital_source_type: str = TRAINED_ALGORITHMIC_MEDIA) -> Path:
    """Sign a labkit output (PNG, MP4 or GIF) with C2PA content credentials; return the signed file.

    Args:
        path: the output; its embedded labkit record (or `record`) becomes the provenance assertion.
        identity: from `load_identity` / `identity_from_config`.
        record: the record to assert (default: the one embedded in the file).
        out: where to write the signed copy (default: replace `path` in place, atomically).
        replace: sign a file that already carries content credentials, replacing them.
        digital_source_type: the IPTC digital source type (default trainedAlgorithmicMedia).

    The embedded record and pixels are left as they are; the manifest goes into the file (a `caBX`
    chunk in a PNG, a `uuid` box in an MP4).
    """
    c2pa = _c2pa()
    src, fmt, record = _signable(c2pa, path, record, replace)
    dest = Path(out).expanduser() if out is not None else src
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".c2pa.tmp")
    try:
        with os.fdopen(fd, "w+b") as target, open(src, "rb") as source:
            builder = c2pa.Builder(_manifest(record, dest.name, digital_source_type))
            builder.sign(identity.signer(), fmt, source, target)
        os.replace(tmp, dest)
    except c2pa.C2paError as e:
        raise CredentialsError(f"c2pa could not sign {src}: {e}.", value=str(src),
                               fix="check the file is a complete labkit output, and the certificate with "
                                   "`labkit compliance verify` on a fresh output.") from e
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest


def _signable(c2pa, path: str | Path, record: Mapping[str, Any] | None, replace: bool
              ) -> tuple[Path, str, Mapping[str, Any]]:
    """The file, its c2pa format and the record to assert, or the error that signing it would raise."""
    from labkit import outputs

    src = Path(path).expanduser()
    if not src.is_file():
        raise InvalidParameter(f"{src} " + ("is a folder, not a file." if src.is_dir() else "does not exist."),
                               value=str(src), fix="pass the path of a labkit output.")
    fmt = _format(src)
    if record is None:
        record = outputs.read_record(src)
    if not replace and _has_manifest(c2pa, src, fmt):
        raise CredentialsError(f"{src} already carries content credentials.", value=str(src),
                               fix="pass --force (replace=True) to replace them with a new manifest.")
    return src, fmt, record


def check_signable(paths: Sequence[str | Path], *, replace: bool = False) -> None:
    """Raise what `sign_file` would raise for the first of `paths` it could not sign (missing, not a PNG / MP4 /
    GIF, no labkit record, already signed without `replace`), before any of them is signed."""
    c2pa = _c2pa()
    for p in paths:
        _signable(c2pa, p, None, replace)


def sign_outputs(paths: Sequence[str | Path], identity: SigningIdentity,
                 suffixes: Sequence[str] = AUTO_SIGN) -> list[Path]:
    """Sign every file of `paths` whose suffix is in `suffixes`, in place; return those signed."""
    return [sign_file(p, identity, replace=True) for p in paths if Path(p).suffix.lower() in suffixes]


def _has_manifest(c2pa, path: Path, fmt: str) -> bool:
    try:
        with open(path, "rb") as f:
            c2pa.Reader(fmt, f).close()
    except c2pa.C2paError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """What `verify` read back from a file.

    state: "Trusted", "Valid", "Invalid" (c2pa's validation state), or None when the file carries
        no content credentials (`signed` False).
    failures: the validation codes that failed, with c2pa's explanations (including
        `signingCredential.untrusted` when the signer is on no trust list).
    provenance: the `labkit.provenance` assertion, when there is one.
    """

    path: str
    signed: bool
    state: str | None = None
    signer: dict[str, Any] = field(default_factory=dict)
    digital_source_type: str | None = None
    assertions: list[str] = field(default_factory=list)
    provenance: dict[str, Any] | None = None
    failures: list[dict[str, str]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    trust_anchors: str | None = None

    @property
    def valid(self) -> bool:
        """The signature and every content hash check out ("Valid" or "Trusted")."""
        return self.state in ("Valid", "Trusted")

    @property
    def trusted(self) -> bool:
        return self.state == "Trusted"

    @property
    def problems(self) -> list[dict[str, str]]:
        """Failures other than the signer not being on a trust list."""
        return [f for f in self.failures if f.get("code") not in UNTRUSTED_CODES]

    def lines(self) -> list[str]:
        """A human summary, one fact a line."""
        if not self.signed:
            return [f"{self.path}: no content credentials (no C2PA manifest)"]
        out = [f"{self.path}: {self.state}"]
        if self.state == "Valid":
            out.append("  signature and content hashes check out; the signer is on no trust list"
                       + ("" if self.trust_anchors else " (pass --trust CA.pem to check it against your CA)"))
        elif self.state == "Trusted":
            out.append("  signature and content hashes check out; the signer chains to a trust anchor")
        signer = ", ".join(f"{k} {v}" for k, v in self.signer.items() if v)
        if signer:
            out.append(f"  signed by: {signer}")
        if self.digital_source_type:
            out.append(f"  digital source type: {self.digital_source_type.rsplit('/', 1)[-1]}")
        prov = self.provenance or {}
        if prov:
            model = prov.get("model") or {}
            if model:
                out.append(f"  model: {model.get('id')} ({model.get('licence') or 'no licence recorded'})")
            for a in prov.get("assets", [])[1:]:
                out.append(f"  asset: {a.get('kind')} {a.get('id')} ({a.get('licence') or 'no licence recorded'})")
            if "seed" in prov:
                out.append(f"  seed: {prov['seed']}")
            terms = (prov.get("terms") or {}).get("text")
            if terms:
                out.append(f"  terms: {terms}")
            if prov.get("run_id"):
                out.append(f"  run: {prov['run_id']}")
        for f in self.problems:
            out.append(f"  FAILED {f.get('code')}: {f.get('explanation', '')}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "signed": self.signed, "state": self.state, "valid": self.valid,
                "trusted": self.trusted, "signer": self.signer, "digital_source_type": self.digital_source_type,
                "assertions": self.assertions, "provenance": self.provenance, "failures": self.failures,
                "trust_anchors": self.trust_anchors, "manifest": self.manifest}


def verify(path: str | Path, *, trust: str | Path | Sequence[str | Path] | None = None) -> Verification:
    """Read a file's content credentials back and report their validation state.

    Args:
        path: any file c2pa reads (labkit's PNG, MP4 and GIF outputs among them).
        trust: PEM file(s) of trust anchors (e.g. `ca.pem` from `keygen`); a signer that chains to
            one is "Trusted" rather than "Valid".

    A file without content credentials gives `signed=False` (not an error): stripping them is
    as easy as re-saving the image.
    """
    c2pa = _c2pa()
    src = Path(path).expanduser()
    if not src.is_file():
        raise InvalidParameter(f"{src} does not exist.", value=str(src), fix="pass the path of a signed file.")
    anchors = None
    if trust:
        from cryptography import x509

        files = [trust] if isinstance(trust, (str, Path)) else list(trust)
        pems = []
        for t in files:
            where, pem = _read(t, "trust anchor file", "--trust (or [c2pa] trust)")
            try:
                x509.load_pem_x509_certificates(pem)
            except ValueError as e:
                raise CredentialsError(f"The trust anchors {where} are not PEM certificates: {e}.", value=str(where),
                                       fix="pass the CA certificate(s) in PEM, e.g. the ca.pem keygen wrote.") from e
            pems.append(pem.decode())
        anchors = "\n".join(pems)
    try:
        context = c2pa.Context.from_dict({"trust": {"user_anchors": anchors}}) if anchors else None
        reader = c2pa.Reader(str(src), context=context) if context is not None else c2pa.Reader(str(src))
    except c2pa.C2paError as e:
        if type(e).__name__.endswith("ManifestNotFound"):
            return Verification(path=str(src), signed=False, trust_anchors=_names(trust))
        raise CredentialsError(f"c2pa cannot read content credentials from {src}: {e}.", value=str(src),
                               fix="pass a file in a format c2pa reads (PNG, JPEG, MP4, GIF …).") from e
    with reader:
        active = reader.get_active_manifest() or {}
        state = reader.get_validation_state()
        results = reader.get_validation_results() or {}
    failures = [{"code": f.get("code", ""), "explanation": f.get("explanation", "")}
                for f in (results.get("activeManifest") or {}).get("failure", [])]
    assertions = active.get("assertions") or []
    provenance = next((a.get("data") for a in assertions if a.get("label") == PROVENANCE_LABEL), None)
    source_type = None
    for a in assertions:
        if a.get("label", "").startswith("c2pa.actions"):
            for act in (a.get("data") or {}).get("actions", []):
                if act.get("action") == "c2pa.created" and act.get("digitalSourceType"):
                    source_type = act["digitalSourceType"]
    info = active.get("signature_info") or {}
    signer = {"common_name": info.get("common_name"), "issuer": info.get("issuer"), "alg": info.get("alg"),
              "time": info.get("time")}
    return Verification(path=str(src), signed=True, state=state, signer={k: v for k, v in signer.items() if v},
                        digital_source_type=source_type, assertions=[a.get("label", "") for a in assertions],
                        provenance=provenance, failures=failures, manifest=active, trust_anchors=_names(trust))


def _names(trust: str | Path | Sequence[str | Path] | None) -> str | None:
    if not trust:
        return None
    files = [trust] if isinstance(trust, (str, Path)) else list(trust)
    return ", ".join(str(t) for t in files)


__all__ = [
    "AUTO_SIGN", "INSTALL", "PROVENANCE_LABEL", "SIGNABLE", "TRAINED_ALGORITHMIC_MEDIA", "KeyPair",
    "SigningIdentity", "Verification", "available", "identity_from_config", "keygen", "load_identity",
    "check_signable", "provenance_assertion", "sign_file", "sign_outputs", "verify",
]
