#!/usr/bin/env python3
"""Deliberate bugs, one at a time: each must make the test suite fail.

Every entry below breaks one guarantee the README makes, the way a careless
change could. For each, the script applies the bug to a scratch checkout of
HEAD, builds the library, runs the unit tests and the integration tests
named for it, and reports whether a test caught the bug ("killed") or not
("SURVIVED"). A survivor is a guarantee no test defends: add a test.

    .venv/bin/python scripts/mutations.py            # all of them
    .venv/bin/python scripts/mutations.py NAME ...   # some of them
    .venv/bin/python scripts/mutations.py --list

Exit status 1 when any bug survived or a bug no longer applies (its code
moved: update the entry). Takes about a minute per entry. Requires the
setup of scripts/test.sh (MariaDB, s3s-fs, .venv).
"""

import os
import pathlib
import subprocess
import sys
import time
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".tmp" / "mutations"


@dataclass
class Bug:
    name: str
    guarantee: str
    file: str
    before: str
    after: str
    tests: str  # a pytest -k expression: the tests that must catch it


BUGS = [
    Bug("no-content-md5-on-single-put", "every S3 request body carries Content-MD5",
        "src/store/s3/requests.rs",
        'headers.push(("content-md5".into(), md5.to_string()));', "let _ = md5;",
        "every_s3_upload_carries_content_md5"),
    Bug("no-content-md5-on-parts", "every multipart part carries Content-MD5",
        "src/store/s3/requests.rs",
        'let headers = [("content-md5".to_string(), md5.to_string())];\n'
        "        let url = || {\n"
        "            let mut a = self.bucket.upload_part(Some(&self.creds), key, part, upload_id);\n"
        '            a.headers_mut().insert("content-md5", headers[0].1.as_str());',
        "let headers: [(String, String); 0] = [];\n"
        "        let _ = md5;\n"
        "        let url = || {\n"
        "            let a = self.bucket.upload_part(Some(&self.creds), key, part, upload_id);",
        "every_s3_upload_carries_content_md5"),
    Bug("purge-key-length-not-compared", "deleting needs the exact purge key",
        "src/ops/objects.rs",
        "let mut diff = (secret.len() ^ given.len()) as u64;", "let mut diff = 0u64;",
        "exact_purge_key"),
    Bug("second-s3-pass-unchecked", "a file that changes between the two S3 passes is never stored",
        "src/store/s3/two_pass.rs",
        "            if got != survey.hash || buf.len as u64 != survey.size {\n"
        "                return Err(changed(got));\n"
        "            }\n", "            let _ = got;\n",
        "changed_between"),
    Bug("leak-1k-per-row", "no memory growth over many calls",
        "src/ffi.rs",
        "state.out.clear();", "state.out.clear();\n        std::mem::forget(std::hint::black_box(vec![1u8; 1024]));",
        "no_leak or memory_growth"),
    Bug("shared-temporary-name", "concurrent writers of one object never share a temporary file",
        "src/confine.rs",
        'let name = format!(".dj-{}-{}-{}.saving", std::process::id(), n, nanos());\n'
        "            let c = cstr(&name)?;\n"
        "            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL",
        'let _ = (n, nanos());\n            let name = ".dj-shared.saving".to_string();\n'
        "            let c = cstr(&name)?;\n"
        "            let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC",
        "concurrent_writers"),
    Bug("insert-limit-inclusive", "filepath_checksum_size_limit_insert is DataJoint's '>'",
        "src/ops/filepath.rs",
        "Some(limit) if size > limit => None,", "Some(limit) if size >= limit => None,",
        "insert_limit"),
    Bug("no-bad-row-audit", "audit reports 'bad row: hash is not the MD5 of filepath'",
        "src/ops/verify.rs",
        'return Ok("bad row: hash is not the MD5 of filepath".into());', "",
        "filepath_row_whose_hash or bad_row"),
]


def run(cmd, cwd, env=None, quiet=True):
    out = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=quiet)
    return out.returncode, (out.stdout or "") + (out.stderr or "")


def scratch_checkout():
    """A clean worktree of HEAD, reused between runs (its build cache too)."""
    if not (SCRATCH / ".git").exists():
        SCRATCH.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(SCRATCH), "HEAD"], cwd=ROOT, check=True,
                       capture_output=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "checkout", "-q", "--detach", "-f", head], cwd=SCRATCH, check=True)
    subprocess.run(["git", "reset", "-q", "--hard"], cwd=SCRATCH, check=True)
    venv = SCRATCH / ".venv"
    if not venv.exists():
        venv.symlink_to(ROOT / ".venv")


def restore():
    subprocess.run(["git", "reset", "-q", "--hard"], cwd=SCRATCH, check=True)


def apply(bug):
    path = SCRATCH / bug.file
    text = path.read_text()
    count = text.count(bug.before)
    if count != 1:
        return f"the code to break was found {count} times in {bug.file}: update this entry"
    path.write_text(text.replace(bug.before, bug.after))
    return None


def tests_pass(k):
    env = dict(os.environ, PATH=f"{pathlib.Path.home() / '.cargo' / 'bin'}:{os.environ['PATH']}")
    code, out = run(["cargo", "test", "--release", "--quiet"], SCRATCH, env)
    if code != 0:
        return False, "unit tests failed"
    code, out = run([str(ROOT / ".venv" / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                     "tests", "-k", k], SCRATCH, env)
    last = [line for line in out.splitlines() if line.strip()][-1:] or [""]
    if code == 5:
        return True, f"no test matched -k '{k}'"
    return code == 0, last[0]


def main(argv):
    if "--list" in argv:
        for b in BUGS:
            print(f"{b.name}: {b.guarantee} ({b.file})")
        return 0
    chosen = [b for b in BUGS if not argv or b.name in argv]
    scratch_checkout()
    env = dict(os.environ, PATH=f"{pathlib.Path.home() / '.cargo' / 'bin'}:{os.environ['PATH']}")
    code, out = run(["cargo", "build", "--release", "--quiet"], SCRATCH, env)
    if code != 0:
        print("HEAD does not build:", out[-2000:])
        return 1
    ok, why = tests_pass(" or ".join(f"({b.tests})" for b in chosen))
    if not ok:
        print(f"the named tests fail without any bug ({why}): fix the suite first")
        return 1
    results = []
    for b in chosen:
        t = time.monotonic()
        restore()
        problem = apply(b)
        if problem:
            results.append((b, "NOT APPLIED", problem))
        else:
            code, out = run(["cargo", "build", "--release", "--quiet"], SCRATCH, env)
            if code != 0:
                results.append((b, "NOT APPLIED", "the bug does not compile: " + out.strip().splitlines()[0]))
            else:
                passed, why = tests_pass(b.tests)
                results.append((b, "SURVIVED" if passed else "killed", why))
        print(f"{results[-1][1]:>11}  {b.name}  ({time.monotonic() - t:.0f} s): {results[-1][2]}", flush=True)
    restore()
    print()
    print("| bug | guarantee | result | by |")
    print("|---|---|---|---|")
    for b, verdict, why in results:
        print(f"| {b.name} | {b.guarantee} | {verdict} | `-k {b.tests}`: {why} |")
    return 0 if all(v == "killed" for _, v, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
