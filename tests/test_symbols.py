#!/usr/bin/env python3
"""The shared library exports exactly the functions the header declares
with KF_API (all named kf_*), nothing else, and its SONAME carries the
major version written in the header.

usage: test_symbols.py LIBRARY HEADER
Exits 77 (skipped) where the platform has no ELF dynamic symbol table to
read (nm -D and readelf are binutils tools)."""
import re
import shutil
import subprocess
import sys

SKIP = 77


def declared(header_text):
    """Function names declared with KF_API in the header."""
    text = re.sub(r'/\*.*?\*/', ' ', header_text, flags=re.S)
    text = re.sub(r'//[^\n]*', ' ', text)
    text = re.sub(r'^\s*#.*$', ' ', text, flags=re.M)
    names = set()
    for decl in re.findall(r'\bKF_API\b([^;{]*)', text):
        m = re.search(r'\b(\w+)\s*\(', decl)
        if m:
            names.add(m.group(1))
    return names


def header_major(header_text):
    m = re.search(r'^#define\s+KF_VERSION_MAJOR\s+(\d+)', header_text, re.M)
    return m.group(1) if m else None


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    lib, header = sys.argv[1], sys.argv[2]
    nm, readelf = shutil.which('nm'), shutil.which('readelf')
    with open(lib, 'rb') as f:
        is_elf = f.read(4) == b'\x7fELF'
    if not (nm and readelf and is_elf):
        print('skipped: needs an ELF library, nm and readelf')
        return SKIP
    with open(header) as f:
        header_text = f.read()

    out = subprocess.run([nm, '-D', '--defined-only', lib], check=True,
                         capture_output=True, text=True).stdout
    exported = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[-2] not in ('U', 'w', 'v'):
            exported.add(fields[-1].split('@')[0])

    want = declared(header_text)
    failures = []
    if not want:
        failures.append('no KF_API declarations found in ' + header)
    for name in sorted(exported - want):
        failures.append('exported but not declared KF_API: ' + name)
    for name in sorted(want - exported):
        failures.append('declared KF_API but not exported: ' + name)
    for name in sorted(n for n in exported | want if not n.startswith('kf_')):
        failures.append('public name outside the kf_ prefix: ' + name)

    dyn = subprocess.run([readelf, '-d', lib], check=True,
                         capture_output=True, text=True).stdout
    m = re.search(r'\(SONAME\).*\[(.*)\]', dyn)
    major = header_major(header_text)
    soname = m.group(1) if m else None
    if soname != 'libkeyformer.so.%s' % major:
        failures.append('SONAME is %s, the header says major version %s'
                        % (soname, major))

    print('%d exported symbols, %d KF_API declarations, SONAME %s'
          % (len(exported), len(want), soname))
    for f in failures:
        print('FAIL: ' + f)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
