"""The dev stage's synthesized assembly, shared by the rehearsal tests (synthesized once, cached by content hash)."""

from __future__ import annotations

import pytest

from refarch_local.rehearsal.template import REPO_ROOT, Assembly, synthesized_assembly


@pytest.fixture(scope="session")
def assembly() -> Assembly:
    """cdk.out of the dev stage, from the cache in the repository's .refarch/ (synthesized if the app changed)."""
    return synthesized_assembly(REPO_ROOT / ".refarch").assembly
