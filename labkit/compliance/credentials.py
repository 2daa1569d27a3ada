"""The old name of `labkit.compliance.signing` (C2PA signing and verification), kept so that
``from labkit.compliance.credentials import sign_file`` still works. The same module object, so patching
either name patches both."""

import sys

from labkit.compliance import signing

sys.modules[__name__] = signing
