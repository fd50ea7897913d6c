"""The translation widget in a real browser (issue 25 item 1): JupyterLab serves a copy of the tutorial that translates
your own videos, headless Chromium (Debian's `chromium`, driven by Playwright from PyPI) opens it and runs every
cell; the test then picks the second clip in the widget, presses Translate, and asserts that the sentence the widget
shows is the one the tutorial's table gave for that clip, and that its strip of frames is on the page.

`.ci/run` installs Chromium (`apt-get install chromium`) and Playwright comes with the dev requirements; where either
is missing the test skips and says which. `SPAMO_SCREENSHOT=path.png` keeps the screenshot there: the docs show the
one in nbs/tutorials/images/translate_widget.png."""
import json, os, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / 'nbs' / 'tutorials' / 'translate_your_videos.ipynb'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path):
    "JupyterLab serving `tmp_path` (no token, no browser of its own); yields its address, stops it after the test."
    if CHROMIUM is None: pytest.skip('no Chromium here: `apt-get install chromium` (Debian; .ci/run does it)')
    pytest.importorskip('playwright', reason='Playwright is missing: pip install playwright (a dev requirement)')
    port = free_port()
    settings = tmp_path / 'lab-settings' / '@jupyterlab' / 'apputils-extension'   # no question about Jupyter news on the page
    settings.mkdir(parents=True); (settings / 'notification.jupyterlab-settings').write_text('{"fetchNews": "false"}')
    log = open(tmp_path / 'lab.log', 'w')
    proc = subprocess.Popen([sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ip', '127.0.0.1', f'--port={port}',
                             '--IdentityProvider.token=', '--ServerApp.password=', '--allow-root', f'--ServerApp.root_dir={tmp_path}',
                             '--LabServerApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate'],
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ | dict(OMP_NUM_THREADS='1', JUPYTERLAB_SETTINGS_DIR=str(tmp_path / 'lab-settings')))
    url = f'http://127.0.0.1:{port}'
    try:
        for _ in range(120):
            try: urllib.request.urlopen(url + '/api/status', timeout=2); break
            except OSError: time.sleep(0.5)
        else: pytest.fail('JupyterLab did not start: ' + (tmp_path / 'lab.log').read_text()[-2000:])
        yield url
    finally:
        proc.terminate()
        try: proc.wait(15)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()


def accept_kernel_dialog(page):
    "JupyterLab may ask which kernel to start (it has not chosen one yet): its default, Python 3. Any other dialog fails."
    dialog = page.locator('.jp-Dialog')
    if dialog.count():
        text = dialog.first.inner_text()
        assert 'kernel' in text.lower(), f'JupyterLab shows a dialog: {text}'
        dialog.first.locator('.jp-mod-accept').click(); dialog.first.wait_for(state='detached', timeout=20_000)


def run_all_cells(page, tries=5):
    "Run > Run All Cells, as a user does; again if no cell started (a menu opened before the notebook was ready)."
    for _ in range(tries):
        accept_kernel_dialog(page)
        try:
            page.locator('.lm-MenuBar-itemLabel', has_text='Run').first.click(timeout=5_000)
            page.locator('.lm-Menu-itemLabel', has_text='Run All Cells').first.click(timeout=5_000)
            page.wait_for_function('() => Array.from(document.querySelectorAll(".jp-InputPrompt"))'
                                   '.some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))', timeout=20_000); return
        except Exception:
            if not page.locator('.jp-Dialog').count(): page.keyboard.press('Escape')   # close an open menu
    raise AssertionError('Run All Cells started no cell')


def test_the_translation_widget_works_in_a_browser(lab, tmp_path):
    from playwright.sync_api import sync_playwright
    nb = json.loads(TUTORIAL.read_text(encoding='utf-8'))
    for c in nb['cells']:
        if c['cell_type'] == 'code': c['outputs'], c['execution_count'] = [], None   # nothing on the page but what runs now
    (tmp_path / 'tutorial.ipynb').write_text(json.dumps(nb))
    shot = Path(os.environ.get('SPAMO_SCREENSHOT') or tmp_path / 'widget.png')
    with sync_playwright() as p:
        try: use_the_widget(p, lab, tmp_path, shot)
        except Exception as first:   # a headless JupyterLab now and then loses the first Run All (~1 in 8 here): a fresh page
            try: use_the_widget(p, lab, tmp_path, shot)
            except Exception as second: raise AssertionError(f'failed twice: {first!r}') from second
    assert shot.stat().st_size > 2000


def use_the_widget(p, lab, tmp_path, shot):
    "Open the tutorial, run it, use its widget, check what it shows and keep its screenshot in `shot`."
    browser = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
    try:
        page = browser.new_page(viewport=dict(width=1280, height=900))
        page.goto(f'{lab}/lab/tree/tutorial.ipynb')
        page.wait_for_selector('.jp-Notebook', timeout=60_000)
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=120_000)   # the kernel is up
        combo = page.locator('.widget-text input[list]')                            # ipywidgets' Combobox: a text box with a datalist
        for _ in range(2):   # now and then JupyterLab runs only the first cell of a Run All sent as the kernel starts: again
            run_all_cells(page)
            try: combo.wait_for(timeout=60_000); break                              # the widget's cell ran: every cell above did
            except Exception: pass
        else:
            page.screenshot(path=str(tmp_path / 'stuck.png'), full_page=True)
            raise AssertionError(f"no widget after 2 Run All; prompts {page.locator('.jp-InputPrompt').all_inner_texts()}, "
                                 f"dialogs {page.locator('.jp-Dialog').all_inner_texts()}; screenshot {tmp_path / 'stuck.png'}")
        page.wait_for_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]', timeout=300_000)
        assert not page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"] >> text=Traceback').count()
        rows = page.locator('.jp-OutputArea-output table').evaluate_all(             # the tutorial's translations table, from the page
            'ts => ts.flatMap(t => { const h = Array.from(t.querySelectorAll("thead th")).map(th => th.textContent.trim());'
            ' return Array.from(t.querySelectorAll("tbody tr")).map(r => Object.fromEntries('
            ' Array.from(r.querySelectorAll("td")).map((td, i) => [h[i + 1], td.textContent.trim()]))); })')
        options = page.locator('.widget-text datalist option').evaluate_all('os => os.map(o => o.value)')
        assert len(options) == 6, options
        result = page.locator('.widget-vbox .widget-html').last
        before = result.inner_html()                                                # the tutorial's own `.run()`: the first clip
        combo.fill(options[1]); page.get_by_role('button', name='Translate').click()
        page.wait_for_function('([el, old]) => el.innerHTML !== old && !el.innerHTML.includes("translating")',
                               arg=[result.element_handle(), before], timeout=120_000)
        shown = result.locator('b')
        sentence = shown.inner_text().strip()
        given = [r['translation'] for r in rows if 'translation' in r and r.get('video') == Path(options[1]).name]
        assert given and sentence, (sentence, rows)
        assert sentence.startswith(given[0].removesuffix('...')), (sentence, given)     # pandas cuts long cells with '...'
        strip = page.locator('.widget-image').last
        assert strip.get_attribute('src').startswith('blob:') or strip.get_attribute('src').startswith('data:'), strip.get_attribute('src')
        assert strip.bounding_box()['width'] > 50
        strip.scroll_into_view_if_needed()
        page.locator('.widget-vbox').last.screenshot(path=str(shot))
    finally: browser.close()
