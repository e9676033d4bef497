#!/usr/bin/env python3
"""Every C snippet of the guides is code that builds and runs.

Each ```c block in the guides below must appear, line for line (leading
indentation aside), in one of the programs under doc/examples/, which
meson builds and runs as the doc-* tests. usage: check_snippets.py DOC_DIR
"""
import os
import re
import sys

GUIDES = ['concepts.md', 'walkthrough.md', 'recipes.md', 'laptops.md']


def dedent(lines):
    body = [l for l in lines if l.strip()]
    cut = min((len(l) - len(l.lstrip(' ')) for l in body), default=0)
    return [l[cut:].rstrip() for l in lines]


def snippets(path):
    text = open(path).read()
    for m in re.finditer(r'^```c\n(.*?)^```', text, re.S | re.M):
        line = text.count('\n', 0, m.start()) + 1
        yield line, m.group(1).rstrip('\n').split('\n')


def found_in(snippet, files):
    want = dedent(snippet)
    n = len(want)
    for name, lines in files.items():
        for i in range(len(lines) - n + 1):
            if lines[i].strip() != snippet[0].strip():
                continue
            if dedent(lines[i:i + n]) == want:
                return name
    return None


def main():
    doc = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__)
    ex = os.path.join(doc, 'examples')
    files = {}
    for name in sorted(os.listdir(ex)):
        if name.endswith(('.c', '.h')):
            with open(os.path.join(ex, name)) as f:
                files[name] = f.read().split('\n')
    checked = failed = 0
    for guide in GUIDES:
        path = os.path.join(doc, guide)
        if not os.path.exists(path):
            print('FAIL %s: missing' % guide)
            failed += 1
            continue
        for line, snippet in snippets(path):
            checked += 1
            where = found_in(snippet, files)
            if where:
                print('ok   %s:%d  (examples/%s)' % (guide, line, where))
            else:
                failed += 1
                print('FAIL %s:%d: not found in doc/examples/:' % (guide, line))
                print('\n'.join('     | ' + l for l in snippet[:8]))
    print('%d snippets checked, %d not in a built example' % (checked, failed))
    return 1 if failed or not checked else 0


if __name__ == '__main__':
    sys.exit(main())
