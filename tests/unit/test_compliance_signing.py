"""C2PA content credentials: keys from `keygen` sign labkit outputs that verify; a changed copy does not;
certificates C2PA would refuse fail before any render; without c2pa-python the error says what to install."""

from __future__ import annotations

import datetime as dt
import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from labkit import outputs
from labkit.compliance import signing
from labkit.errors import ConfigError, CredentialsError, InvalidParameter, MissingDependency

RECORD = {
    "plan": {"prompt": "a red circle on the left", "seed": 42, "steps": 20, "model": "toy"},
    "model": {"id": "toy", "revision": "abc123", "hash": "f" * 64, "licence": "apache-2.0"},
    "run_id": "0123456789abcdef",
    "provenance": {
        "assets": [{"kind": "model", "id": "toy", "licence": "apache-2.0", "hash": "f" * 64},
                   {"kind": "controller-llm", "id": "qwen", "licence": "qwen-research"}],
        "terms": {"commercial": False, "research_only": True, "text": "research use only",
                  "sources": [{"licence_id": "apache-2.0"}, {"licence_id": "qwen-research"}]},
        "compliance": {"mode": "research", "action": "allow"},
    },
    "terms": "research use only",
    "versions": {"labkit": "0.1.0"},
}


def _png(folder: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    return outputs.write_image_outputs([pixels], folder, "txt2img-42", RECORD)[0]


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, out = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        out.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return out


def _png_bytes(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
                    for t, d in chunks)
    return b"\x89PNG\r\n\x1a\n" + body


def _change_one_pixel(signed: Path, out: Path) -> Path:
    """A copy whose pixels differ in one place and whose every other chunk (the manifest too) is kept,
    the way an editor that preserves metadata would save it."""
    from PIL import Image

    px = np.asarray(Image.open(signed).convert("RGB")).copy()
    px[0, 0] = 255 - px[0, 0]
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, format="PNG")
    new_idat = [c for c in _chunks(buf.getvalue()) if c[0] == b"IDAT"]
    old = _chunks(signed.read_bytes())
    idat = [i for i, (t, _) in enumerate(old) if t == b"IDAT"]
    out.write_bytes(_png_bytes(old[:idat[0]] + new_idat + old[idat[-1] + 1:]))
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    pytest.importorskip("c2pa")
    return signing.keygen(tmp_path_factory.mktemp("keys") / "c2pa")


@pytest.fixture(scope="module")
def identity(keys):
    return signing.load_identity(keys.cert, keys.key)


def test_keygen_writes_a_ca_and_a_leaf_it_issued(keys):
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    chain = x509.load_pem_x509_certificates(keys.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(keys.ca.read_bytes())
    assert len(chain) == 2 and chain[1] == ca
    leaf = chain[0]
    assert leaf.issuer == ca.subject != leaf.subject  # not self-signed: C2PA rejects those
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert keys.key.stat().st_mode & 0o077 == 0  # the private key is the owner's alone
    assert (keys.folder / ".gitignore").read_text().strip().endswith("*")
    assert f'cert = "{keys.cert}"' in keys.toml() and f'key = "{keys.key}"' in keys.toml()
    with pytest.raises(InvalidParameter, match="already exist"):
        signing.keygen(keys.folder)


def test_signed_png_verifies_and_a_modified_copy_does_not(tmp_path, keys, identity):
    from PIL import Image

    png = _png(tmp_path)
    before = np.asarray(Image.open(png)).copy()
    assert signing.verify(png).signed is False  # nothing there yet

    signing.sign_file(png, identity)
    v = signing.verify(png)
    assert v.signed and v.state == "Valid" and v.valid and not v.problems
    assert v.digital_source_type == signing.TRAINED_ALGORITHMIC_MEDIA
    assert v.signer["common_name"] == "labkit local test signer"
    prov = v.provenance
    assert prov["model"] == {"id": "toy", "revision": "abc123", "hash": "f" * 64, "licence": "apache-2.0"}
    assert [a["licence"] for a in prov["assets"]] == ["apache-2.0", "qwen-research"]
    assert prov["licences"] == ["apache-2.0", "qwen-research"]
    assert prov["terms"]["text"] == "research use only" and prov["terms"]["commercial"] is False
    assert prov["seed"] == 42 and prov["plan"]["prompt"] == "a red circle on the left"
    assert prov["run_id"] == RECORD["run_id"] and prov["index"] == 0
    # Signing leaves the pixels and the embedded labkit record as they were.
    assert np.array_equal(np.asarray(Image.open(png)), before)
    assert outputs.read_png_record(png)["run_id"] == RECORD["run_id"]

    # Against the CA from keygen the signer is trusted, not merely valid.
    assert signing.verify(png, trust=keys.ca).state == "Trusted"

    # One pixel changed, the manifest kept: the content hash no longer matches.
    changed = signing.verify(_change_one_pixel(png, tmp_path / "changed.png"))
    assert changed.signed and changed.state == "Invalid" and not changed.valid
    assert "assertion.dataHash.mismatch" in [f["code"] for f in changed.problems]
    assert any("FAILED assertion.dataHash.mismatch" in line for line in changed.lines())

    # Re-saved by a tool that drops unknown chunks: the credentials are gone, not forged.
    stripped = tmp_path / "stripped.png"
    Image.open(png).save(stripped)
    assert signing.verify(stripped).signed is False


def test_signing_twice_needs_replace_and_out_writes_a_copy(tmp_path, identity):
    png = _png(tmp_path)
    copy = signing.sign_file(png, identity, out=tmp_path / "signed" / "copy.png")
    assert signing.verify(copy).valid and not signing.verify(png).signed
    with pytest.raises(CredentialsError, match="already carries content credentials"):
        signing.sign_file(copy, identity)
    signing.sign_file(copy, identity, replace=True)
    assert signing.verify(copy).valid


def test_signed_mp4_and_gif_verify_and_keep_their_record(tmp_path, identity):
    frames = [np.full((16, 16, 3), 20 * i, dtype=np.uint8) for i in range(6)]
    paths = outputs.write_video(frames, tmp_path / "clip", 6, {**RECORD, "index": 0})
    for path in paths.values():
        signing.sign_file(path, identity)
        v = signing.verify(path)
        assert v.state == "Valid", (path, v.failures)
        assert v.provenance["model"]["id"] == "toy"
        assert outputs.read_video_record(path)["run_id"] == RECORD["run_id"]
    assert signing.sign_outputs(list(paths.values()), identity) == [paths["mp4"]]  # PNG and MP4 only


def test_files_labkit_cannot_sign(tmp_path, identity):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InvalidParameter, match=r"does not sign \.txt"):
        signing.sign_file(text, identity)
    bare = tmp_path / "bare.png"
    from PIL import Image

    Image.new("RGB", (4, 4)).save(bare)
    with pytest.raises(Exception, match="carries no labkit record"):
        signing.sign_file(bare, identity)
    with pytest.raises(InvalidParameter, match="does not exist"):
        signing.verify(tmp_path / "missing.png")
    garbage = tmp_path / "ca.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(CredentialsError, match="trust anchors .* are not PEM certificates"):
        signing.verify(bare, trust=garbage)


def _cert(tmp_path: Path, *, self_signed: bool = False, eku: bool = True) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test signer")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name if self_signed else ca_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
    leaf = builder.sign(key if self_signed else ca_key, hashes.SHA256())
    cert, key_path = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key_path


def test_certificates_c2pa_would_refuse_fail_when_loaded(tmp_path, keys):
    pytest.importorskip("c2pa")
    cert, key = _cert(tmp_path, self_signed=True)
    with pytest.raises(CredentialsError, match="self-signed") as err:
        signing.load_identity(cert, key)
    assert "keygen" in err.value.fix
    cert, key = _cert(tmp_path, eku=False)  # CA-issued, but without the extended key usage C2PA asks for
    with pytest.raises(CredentialsError, match="c2pa refuses to sign"):
        signing.load_identity(cert, key)
    with pytest.raises(CredentialsError, match="does not belong"):
        signing.load_identity(keys.cert, key)
    with pytest.raises(InvalidParameter, match="does not exist"):
        signing.load_identity(tmp_path / "nope.pem", key)


def test_signing_config_from_labkit_toml_and_environment(tmp_path, monkeypatch, keys):
    from labkit.config import LabConfig

    for var in ("LABKIT_C2PA_CERT", "LABKIT_C2PA_KEY", "LABKIT_C2PA_TRUST", "MLFLOW_TRACKING_URI", "LABKIT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "project"
    root.mkdir()
    assert signing.identity_from_config(LabConfig.resolve(root)) is None  # nothing configured: no signing

    rel = Path("keys")
    (root / rel).symlink_to(keys.folder)
    (root / "labkit.toml").write_text(f'[c2pa]\ncert = "{rel / "signer.pem"}"\nkey = "{rel / "signer.key"}"\n'
                                      f'trust = "{rel / "ca.pem"}"\n')
    config = LabConfig.resolve(root)
    assert config.c2pa_cert == (root / rel / "signer.pem").resolve()  # relative to the project root
    assert signing.identity_from_config(config).alg == "es256"
    assert config.to_dict()["c2pa_trust"] == str(keys.ca)

    (root / "labkit.toml").unlink()
    monkeypatch.setenv("LABKIT_C2PA_CERT", str(keys.cert))
    with pytest.raises(ConfigError, match="half configured") as err:
        signing.identity_from_config(LabConfig.resolve(root))
    assert "LABKIT_C2PA_KEY" in err.value.fix


def test_without_c2pa_the_rest_works_and_the_error_says_what_to_install(tmp_path, monkeypatch):
    from labkit.config import LabConfig

    monkeypatch.setitem(sys.modules, "c2pa", None)  # what `import c2pa` does when it is not installed
    assert signing.available() is False
    png = _png(tmp_path)
    for call in (lambda: signing.verify(png), lambda: signing.load_identity(png, png),
                 lambda: signing.sign_file(png, None)):
        with pytest.raises(MissingDependency) as err:
            call()
        assert err.value.fix == 'pip install "labkit[c2pa]"' and 'pip install "labkit[c2pa]"' in str(err.value)
    # Outputs, their records and unconfigured signing need none of it.
    assert outputs.read_png_record(png)["run_id"] == RECORD["run_id"]
    for var in ("LABKIT_C2PA_CERT", "LABKIT_C2PA_KEY", "MLFLOW_TRACKING_URI", "LABKIT_ROOT"):
        monkeypatch.delenv(var, raising=False)
    assert signing.identity_from_config(LabConfig.resolve(tmp_path)) is None


def test_the_old_module_name_is_the_same_module():
    from labkit.compliance import credentials as old

    assert old is signing
    assert old.sign_file is signing.sign_file
