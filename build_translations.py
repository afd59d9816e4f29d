"""Building the wheel compiles the app's translations (setuptools' ``build_py`` hook, named in
pyproject.toml's ``[tool.setuptools.cmdclass]``; not part of the installed package).

The ``.po`` catalogues are the source and are committed; the ``.mo`` files Django reads are
generated, so never committed: ``make`` compiles them in place for the checkout (``make demo``
and ``make test``), and this hook compiles them into every wheel, so a site that installs the
package gets them. Needs ``msgfmt`` (GNU gettext) on the machine that builds the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools.command.build_py import build_py

LOCALE = Path("imagen_assets") / "locale"


class BuildPy(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            # An editable install reads the checkout, where make compiles the catalogues.
            return
        catalogues = sorted(LOCALE.glob("*/LC_MESSAGES/*.po"))
        if catalogues and shutil.which("msgfmt") is None:
            raise SystemExit(
                "Building imagen-assets needs msgfmt to compile its translations: install "
                "GNU gettext (Debian: apt-get install gettext)."
            )
        for po in catalogues:
            mo = Path(self.build_lib) / po.with_suffix(".mo")
            mo.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["msgfmt", "--check-format", "-o", str(mo), str(po)], check=True)
