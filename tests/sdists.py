"""Source distributions the tests make, and a PEP 503 directory index to hold them."""

from __future__ import annotations

import io
import tarfile
from html import escape
from pathlib import Path

from packaging.utils import canonicalize_name

SETUP_PURE = """\
from setuptools import setup
setup(name={name!r}, version={version!r}, py_modules=[{module!r}],
      python_requires=">=3.7", install_requires={requires!r})
"""

SETUP_C = """\
from setuptools import Extension, setup
{before}
setup(name={name!r}, version={version!r}, python_requires=">=3.7",
      ext_modules=[Extension({module!r}, [{source!r}], extra_link_args={link!r})])
"""

C_SOURCE = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>
%(zlib_decl)s
static PyObject *answer(PyObject *self, PyObject *args) {
    %(zlib_call)s
    return PyLong_FromLong(42);
}
static PyMethodDef methods[] = {{"answer", answer, METH_NOARGS, "The answer."}, {NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "%(module)s", NULL, -1, methods};
PyMODINIT_FUNC PyInit_%(module)s(void) { return PyModule_Create(&module); }
"""


def _tar(path: Path, root: str, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def _pkg_info(name: str, version: str) -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"


def pure_sdist(dest: Path, name: str, version: str, requires: list[str] | None = None,
               body: str = "VALUE = 'pure'\n") -> Path:
    module = canonicalize_name(name).replace("-", "_")
    root = f"{module}-{version}"
    return _tar(dest / f"{root}.tar.gz", root, {
        "PKG-INFO": _pkg_info(name, version),
        "setup.py": SETUP_PURE.format(name=name, version=version, module=module,
                                      requires=requires or []),
        f"{module}.py": body,
    })


def c_sdist(dest: Path, name: str, version: str, link_zlib: bool = False,
            link_sqlite: bool = False, before: str = "") -> Path:
    """A C extension; with link_zlib it links libz.so.1 by soname (no headers needed),
    with link_sqlite libsqlite3.so.0 (a library outside Debian's base system) and
    libc.so.6 (inside it). Its setup.py runs `before` first (to take its time)."""
    module = canonicalize_name(name).replace("-", "_")
    root = f"{module}-{version}"
    decls, calls, link = [], [], []
    if link_zlib:
        decls.append("unsigned long zlibCompileFlags(void);")
        calls.append("(void)zlibCompileFlags();")
        link.append("-l:libz.so.1")
    if link_sqlite:  # and calls into libc, as real extensions do: it needs libc.so.6
        decls.append("int sqlite3_libversion_number(void);")
        calls.append('(void)sqlite3_libversion_number(); (void)getenv("WW");')
        link.append("-l:libsqlite3.so.0")
    source = C_SOURCE % {"module": module, "zlib_decl": "\n".join(decls),
                         "zlib_call": " ".join(calls)}
    return _tar(dest / f"{root}.tar.gz", root, {
        "PKG-INFO": _pkg_info(name, version),
        "setup.py": SETUP_C.format(name=name, version=version, module=module,
                                   source=f"{module}.c", link=link, before=before),
        f"{module}.c": source,
    })


def write_index(root: Path, files: list[Path]) -> str:
    """Lay `files` out as a PEP 503 index under root/simple; return its file:// URL."""
    simple = root / "simple"
    by_project: dict[str, list[Path]] = {}
    for f in files:
        if f.name.endswith(".whl"):
            stem = f.name.split("-")[0]
        else:
            stem = f.name.removesuffix(".tar.gz").rsplit("-", 1)[0]
        by_project.setdefault(canonicalize_name(stem), []).append(f)
    for project, project_files in by_project.items():
        directory = simple / project
        directory.mkdir(parents=True, exist_ok=True)
        links = []
        for f in project_files:
            target = directory / f.name
            if target != f:
                target.write_bytes(f.read_bytes())
            links.append(f'<a href="{escape(f.name)}">{escape(f.name)}</a><br>')
        (directory / "index.html").write_text(_html(links))
    (simple / "index.html").write_text(_html(f'<a href="{p}/">{p}</a>' for p in by_project))
    return simple.as_uri() + "/"


def _html(links) -> str:
    return "<html><body>\n" + "\n".join(links) + "\n</body></html>\n"


SETUP_OPTIONAL_C = """\
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class optional_build_ext(build_ext):
    # The extension only speeds things up: when it cannot be built (its library's
    # header is missing), the package is installed without it, as PyYAML is
    # without libyaml.
    def run(self):
        try:
            super().run()
        except Exception as error:
            print("WARNING: the C extension could not be built:", error)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as error:
            print("WARNING: building", ext.name, "failed, pure Python only:", error)


setup(name={name!r}, version={version!r}, python_requires=">=3.7", packages=[{module!r}],
      ext_modules=[Extension({module!r} + "._speedups", [{source!r}])],
      cmdclass={{"build_ext": optional_build_ext}})
"""

OPTIONAL_C_SOURCE = """\
#include <Python.h>
#include <%(header)s>
"""


def optional_c_sdist(dest: Path, name: str, version: str,
                     header: str = "wheelwright_absent_library.h",
                     optional: bool = True) -> Path:
    """A pure-Python package with an optional C extension that includes `header`
    (by default one no builder has): its build falls back to pure Python, and still
    makes a wheel tagged for the platform, with no compiled code in it. Not
    `optional`, the extension is required, and the build fails for want of it."""
    module = canonicalize_name(name).replace("-", "_")
    root = f"{module}-{version}"
    setup = SETUP_OPTIONAL_C.format(name=name, version=version, module=module,
                                    source=f"{module}/_speedups.c")
    if not optional:
        setup = setup.replace('cmdclass={"build_ext": optional_build_ext}', 'cmdclass={}')
    return _tar(dest / f"{root}.tar.gz", root, {
        "PKG-INFO": _pkg_info(name, version),
        "setup.py": setup,
        f"{module}/__init__.py": "VALUE = 'pure fallback'\n",
        f"{module}/_speedups.c": OPTIONAL_C_SOURCE % {"header": header},
    })
