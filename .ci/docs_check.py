"""The documentation site, checked offline (Quarto cannot be installed here; the deploy workflow builds the real site).

1. `nbs/nbdev.yml` is the file nbdev writes from settings.ini (`nbdev_docs` rewrites it; a stale one is an error).
2. The notebooks are processed as `nbdev_docs` processes them (nbdev's processors into `_proc/`, which also runs the
   cells nbdev executes to render the docs: exported cells and cells with imports).
3. Each processed page is rendered to HTML with nbconvert; every sidebar entry of `_quarto.yml` must exist, every
   internal link must reach a page or file of the site, every image must resolve, and every notebook page must
   show outputs (a picture, a table or a value).

    python .ci/docs_check.py [ROOT] [--html DIR]     # exit status 1 and one line per problem when something is broken
"""
from __future__ import annotations
import argparse, json, sys
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

PAGE_SUFFIXES = ('.ipynb', '.qmd', '.md')


class _Refs(HTMLParser):
    "The href of every <a> and the src of every <img> of a page, and how many outputs it shows."
    def __init__(self):
        super().__init__(); self.links, self.images, self.outputs = [], [], 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'a' and a.get('href'): self.links.append(a['href'])
        if tag == 'img' and a.get('src') is not None: self.images.append(a['src'])
        if tag == 'div' and 'jp-OutputArea-output' in (a.get('class') or '').split(): self.outputs += 1


def sidebar_entries(quarto: dict) -> list[str]:
    "Every page the sidebar of a parsed `_quarto.yml` names (strings and `href`s, sections included)."
    out = []
    def walk(items):
        for it in items or []:
            if isinstance(it, str): out.append(it)
            elif isinstance(it, dict):
                if it.get('href'): out.append(it['href'])
                walk(it.get('contents'))
    side = quarto.get('website', {}).get('sidebar', {})
    for s in side if isinstance(side, list) else [side]: walk(s.get('contents'))
    return out


def _page_exists(site: Path, rel: Path) -> bool:
    "A file of the site, or a page Quarto renders to `rel` (x.html from x.ipynb / x.qmd / x.md; a folder's index)."
    p = site / rel
    if p.is_file(): return True
    if p.is_dir(): return any((p / f'index{s}').is_file() for s in PAGE_SUFFIXES)
    if p.suffix == '.html': return any(p.with_suffix(s).is_file() for s in PAGE_SUFFIXES)
    return False


def check_page(html: str, page: Path, site: Path) -> tuple[list[str], int]:
    "Problems of one rendered page (its links and images, relative to `page` inside `site`) and its output count."
    r = _Refs(); r.feed(html)
    where, problems = page.relative_to(site), []
    for kind, refs in (('link', r.links), ('image', r.images)):
        for ref in refs:
            u = urlparse(ref)
            if u.scheme or u.netloc or ref.startswith('#') or (kind == 'image' and ref.startswith('data:')): continue
            if not u.path: problems.append(f'{where}: empty {kind} {ref!r}'); continue
            target = (page.parent / unquote(u.path)).resolve()
            try: rel = target.relative_to(site.resolve())
            except ValueError: problems.append(f'{where}: {kind} {ref!r} leaves the site (nbs/)'); continue
            if not _page_exists(site, rel): problems.append(f'{where}: broken {kind} {ref!r}')
    return problems, r.outputs


def cell_flags(src: str) -> set[str]:
    "The nbdev directives at the top of a cell: `#| hide` gives 'hide', `#| eval: false` gives 'eval' and 'eval-false'."
    out = set()
    for line in src.splitlines():
        if not line.startswith('#|'): break
        out |= {w.rstrip(':') for w in line[2:].split()[:1]}
        if line[2:].strip().lower().replace(' ', '') == 'eval:false': out.add('eval-false')
    return out


def shows_code(nb: dict) -> bool:
    "Whether a notebook's page shows a code cell: one neither hidden nor exported, nor the closing `nbdev_export()`."
    srcs = [''.join(c['source']) for c in nb['cells'] if c['cell_type'] == 'code']
    return any(s.strip() and not cell_flags(s) & {'hide', 'export'} and 'nbdev_export(' not in s for s in srcs)


@contextmanager
def in_project(root):
    "Inside the nbdev project `root`: the working folder, and nbdev's config cleared on the way in and out (it caches the first project it finds)."
    from fastcore.xtras import working_directory
    from nbdev.config import get_config
    get_config.cache_clear()
    try:
        with working_directory(root): yield get_config()
    finally: get_config.cache_clear()


def check(root='.', html_dir: str | None = None, n_workers: int = 2, verbose: bool = True) -> list[str]:
    "Every problem of the site in project `root` (empty: the site is sound)."
    import markdown_it, nbformat, yaml
    from nbconvert import HTMLExporter
    from nbdev.quarto import _nbdev_yml
    from nbdev.serve import proc_nbs
    root = Path(root).resolve()
    with in_project(root) as cfg:
        problems = []
        nbs = cfg.nbs_path
        vals = {k: cfg[k] for k in ['title', 'description', 'branch', 'git_url', 'doc_host', 'doc_baseurl']} | dict(doc_path=cfg.doc_path.name)
        ny = nbs / 'nbdev.yml'
        if not ny.exists() or ny.read_text() != _nbdev_yml.format(**vals):
            problems.append(f'{ny.relative_to(root)}: missing or not what nbdev writes from settings.ini (run nbdev_docs or nbdev_proc_nbs)')
        qy = nbs / '_quarto.yml'
        if not qy.exists(): return problems + [f'{qy.relative_to(root)}: missing']
        quarto = yaml.safe_load(qy.read_text())
        if 'nbdev.yml' not in (quarto.get('metadata-files') or []): problems.append('_quarto.yml: metadata-files does not name nbdev.yml')
        entries = sidebar_entries(quarto)
        for e in entries:
            if not (nbs / e).is_file(): problems.append(f'_quarto.yml: sidebar entry {e!r} is not a file in {nbs.name}/')
        try: cache = proc_nbs(n_workers=n_workers, force=True)
        except Exception as e: return problems + [f'nbdev processing failed (nbdev_docs would too): {e}'.strip()]
        out = Path(html_dir) if html_dir else None
        exporter = HTMLExporter(template_name='lab')
        for page in sorted(cache.rglob('*.ipynb')):
            if any(p.startswith(('.', '_')) for p in page.relative_to(cache).parts): continue
            nb = nbformat.read(page, as_version=4)  # the page without its front matter (a raw cell Quarto consumes)
            nb.cells = [c for c in nb.cells if not (c.cell_type == 'raw' and c.source.startswith('---'))]
            html, _ = exporter.from_notebook_node(nb)
            found, outputs = check_page(html, page, cache)
            problems += found
            if outputs == 0 and shows_code(json.loads((nbs / page.relative_to(cache)).read_text(encoding='utf-8'))):
                problems.append(f'{page.relative_to(cache)}: shows code but no output (commit the notebook with its outputs)')
            if out:
                dest = out / page.relative_to(cache).with_suffix('.html'); dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(html, encoding='utf-8')
            if verbose: print(f'{page.relative_to(cache)}: {outputs} outputs, {len(found)} problems', flush=True)
        for md in sorted(cache.rglob('*.md')):
            if any(p.startswith(('.', '_')) for p in md.relative_to(cache).parts): continue
            problems += check_page(markdown_it.MarkdownIt().render(md.read_text(encoding='utf-8')), md, cache)[0]
        return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('root', nargs='?', default=str(Path(__file__).resolve().parents[1]), help='the project (default: this repository)')
    p.add_argument('--html', help='also write the rendered pages to this folder')
    a = p.parse_args(argv)
    problems = check(a.root, a.html)
    for x in problems: print('docs:', x, file=sys.stderr)
    print(f"docs check: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == '__main__': sys.exit(main())
