# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The user-facing documentation stays true to the code: variables, commands, messages and examples it quotes exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / 'README.md').read_text(encoding='utf-8')
CONTRIBUTING = (ROOT / 'CONTRIBUTING.md').read_text(encoding='utf-8')
ROLES = sorted(path.parent.parent.name for path in ROOT.glob('roles/*/meta/argument_specs.yml'))


def load_generator():
    spec = importlib.util.spec_from_file_location('gen_role_docs', ROOT / 'scripts' / 'gen_role_docs.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def spec_options(role):
    specs = yaml.safe_load((ROOT / 'roles' / role / 'meta' / 'argument_specs.yml').read_text(encoding='utf-8'))
    return specs['argument_specs']['main']['options']


def section(text, title):
    start = text.index('\n## ' + title)
    end = text.find('\n## ', start + 1)
    return text[start:end if end != -1 else len(text)]


def test_roles_exist():
    assert {'docker', 'runner'} <= set(ROLES)


@pytest.mark.parametrize('role', ROLES)
def test_defaults_match_argument_specs(role):
    """defaults/main.yml and meta/argument_specs.yml name the same variables with the same defaults."""
    defaults = yaml.safe_load((ROOT / 'roles' / role / 'defaults' / 'main.yml').read_text(encoding='utf-8')) or {}
    options = spec_options(role)
    assert sorted(defaults) == sorted(name for name, spec in options.items() if 'default' in spec)
    mismatched = [name for name, value in defaults.items() if options[name]['default'] != value]
    assert not mismatched, 'defaults differ from the argument specs: {0}'.format(mismatched)


def test_role_reference_is_generated_and_current():
    generator = load_generator()
    text = generator.render(ROOT)
    assert (ROOT / 'docs' / 'roles.md').read_text(encoding='utf-8') == text, 'run python scripts/gen_role_docs.py'
    for role in ROLES:
        for name in spec_options(role):
            assert '#### `{0}`'.format(name) in text


def test_markup_conversion():
    generator = load_generator()
    names = {'gitlab_runner_url'}
    out = generator.markup('Set O(gitlab_runner_url=x), C(a b), V(true), M(community.docker.docker_container), '
                           'I(it), B(bold), U(https://example.com), L(text, https://example.com/x).', 'runner', 'main', names)
    assert out == ('Set [`gitlab_runner_url=x`](#runner-main-gitlab-runner-url), `a b`, `true`, '
                   '`community.docker.docker_container`, *it*, **bold**, <https://example.com>, '
                   '[text](https://example.com/x).')


def test_quick_start_runs_what_ci_runs():
    quick = section(README, 'Quick start')
    assert 'bash scripts/demo' in quick and 'bash scripts/test' in quick
    assert re.search(r'^bash scripts/test$', (ROOT / '.ci' / 'run').read_text(encoding='utf-8'), re.M)
    ci_example = (ROOT / 'examples' / 'gitlab-ci' / 'collection-tests.gitlab-ci.yml').read_text(encoding='utf-8')
    assert yaml.safe_load(ci_example)['collection-tests']['script'] == ['bash scripts/test']


def test_first_screen():
    """Before the first reference section: the picture, the two commands, the one-line include, a playbook."""
    first = README[:README.index('\n## Choosing a token flow')]
    for needle in ('gitlab-runner container', 'job container', 'docker.sock', 'host dockerd', 'bash scripts/demo',
                   'bash scripts/test', 'roles: [dood.gitlab_runner.runner]', 'gitlab_runner_token:'):
        assert needle in first, needle


def test_readme_minimal_playbook_is_the_example_file():
    blocks = re.findall(r'```yaml\n(.*?)```', README, re.S)
    example = (ROOT / 'examples' / 'minimal.yml').read_text(encoding='utf-8')
    assert example in blocks


def test_documented_variables_exist():
    known = set()
    for role in ROLES:
        known |= set(spec_options(role))
    audit = (ROOT / 'playbooks' / 'audit.yml')
    if audit.exists():
        known |= set(re.findall(r'\b(gitlab_runner_audit_\w+)', audit.read_text(encoding='utf-8')))
    for name, text in (('README.md', README), ('CONTRIBUTING.md', CONTRIBUTING)):
        used = set(re.findall(r'\b((?:gitlab_runner|docker)_[a-z0-9_]+)\b', text))
        unknown = sorted(used - known - {'docker_container'})
        assert not unknown, '{0} names variables no role has: {1}'.format(name, unknown)


def source_corpus():
    texts = []
    for pattern in ('plugins/**/*.py', 'roles/**/*.yml', 'roles/**/*.j2'):
        texts.extend(path.read_text(encoding='utf-8') for path in ROOT.glob(pattern))
    text = '\n'.join(texts)
    text = re.sub(r'''['"]\s*\n\s*['"]''', '', text)  # Python's implicit concatenation of string literals
    text = text.replace("\\'", "'")
    return ' '.join(text.split())


def test_troubleshooting_messages_exist():
    """Each message quoted in the README's table is still what the code says (wildcards: '...', ..., N, HTTP codes)."""
    table = section(README, 'Troubleshooting')
    rows = [line for line in table.splitlines() if line.startswith('| `')]
    assert len(rows) >= 8
    corpus = source_corpus()
    for row in rows:
        first = row.split(' | ')[0]
        spans = [a or b for a, b in re.findall(r'``\s(.+?)\s``|`([^`]+)`', first)]
        checked = 0
        for span in spans:
            for fragment in re.split(r"'\.\.\.'|\.\.\.|\bN\b|\b[1-5]\d\d\b", span):
                fragment = fragment.strip(' \'":/()')
                if len(fragment) >= 12:
                    assert fragment in corpus, 'README quotes a message the code no longer has: {0!r}'.format(fragment)
                    checked += 1
        assert checked, 'nothing checkable in {0!r}'.format(first)


# Where the project's own pages cite sections: "docs/gitlab-runner-config.md §2.8", "docs/x.md` §1, §1.2".
CITATION = re.compile(r'(docs/[\w./-]+\.md)`?((?:\s*(?:,|and)?\s*§\s*\d+(?:\.\d+)*)+)')
CITING_SOURCES = ('plugins/**/*.py', 'roles/**/*.yml', 'roles/**/*.j2', 'tools/**/*.py', 'tools/**/*.md',
                  'tests/**/*.py', 'scripts/**/*.py', 'extensions/**/*.yml', 'docs/**/*.md', '*.md')


def headings(path):
    return re.findall(r'^#+ (.+?)\s*$', path.read_text(encoding='utf-8'), re.M)


def section_numbers(path):
    return {title.split()[0] for title in headings(path) if re.match(r'\d+(\.\d+)*\s', title)}


def citing_files():
    for pattern in CITING_SOURCES:
        for path in sorted(ROOT.glob(pattern)):
            if not any(part in ('build', '.venv', '.cache', 'output') for part in path.relative_to(ROOT).parts):
                yield path


def test_section_citations_resolve():
    """A cited section of a page in docs/ is a heading of that page: renumbering a page breaks this test."""
    checked = 0
    for path in citing_files():
        for page, sections in CITATION.findall(path.read_text(encoding='utf-8')):
            target = ROOT / page
            if not target.exists():
                continue
            numbers = section_numbers(target)
            for number in re.findall(r'§\s*(\d+(?:\.\d+)*)', sections):
                assert number in numbers, '{0} cites {1} §{2}, which has no such section'.format(
                    path.relative_to(ROOT), page, number)
                checked += 1
    assert checked, 'no section citation found'


def test_runner_config_page_references_resolve():
    """The page's own cross-references (§2.0, §4 item 4) name its sections."""
    page = ROOT / 'docs' / 'gitlab-runner-config.md'
    numbers = section_numbers(page)
    assert {'2.0', '2.8', '3.1', '3.5'} <= numbers
    text = CITATION.sub('', page.read_text(encoding='utf-8'))
    cited = set(re.findall(r'§(\d+(?:\.\d+)*)', text))
    assert cited and cited <= numbers, sorted(cited - numbers)


def github_anchor(title):
    title = re.sub(r'[^\w\- ]', '', title.strip().lower().replace('`', ''))
    return title.replace(' ', '-')


def test_relative_links_resolve():
    """Links between the README, CONTRIBUTING and docs/ point at files (and headings) that exist."""
    checked = 0
    for path in [ROOT / 'README.md', ROOT / 'CONTRIBUTING.md'] + sorted((ROOT / 'docs').glob('**/*.md')):
        for target in re.findall(r'\]\(([^)\s]+)\)', path.read_text(encoding='utf-8')):
            if re.match(r'[a-z]+:', target):
                continue
            file_part, dummy, anchor = target.partition('#')
            resolved = (path.parent / file_part).resolve() if file_part else path
            assert resolved.exists(), '{0} links to {1}, which does not exist'.format(path.relative_to(ROOT), target)
            if anchor and resolved.suffix == '.md':
                text = resolved.read_text(encoding='utf-8')
                anchors = {github_anchor(title) for title in headings(resolved)}
                anchors |= set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
                assert anchor in anchors, '{0} links to {1}: no such heading'.format(path.relative_to(ROOT), target)
            checked += 1
    assert checked


SCHEMA = ROOT / 'docs' / 'gitlab-runner-schema'


@pytest.mark.parametrize('table', sorted(path.name for path in SCHEMA.glob('*.tsv')))
def test_schema_readme_explains_every_table_and_column(table):
    readme = (SCHEMA / 'README.md').read_text(encoding='utf-8')
    assert '`{0}`'.format(table) in readme, 'docs/gitlab-runner-schema/README.md does not list ' + table
    lines = (SCHEMA / table).read_text(encoding='utf-8').splitlines()
    header = next(line for line in lines if not line.startswith('#')).split('\t')
    documented = re.findall(r'^\| `(\w+)` \|', section(readme, 'Format'), re.M)
    assert header == documented, 'columns of {0}: {1}; the README explains {2}'.format(table, header, documented)


def read_schema(name):
    rows = {}
    for line in (SCHEMA / name).read_text(encoding='utf-8').splitlines():
        fields = line.split('\t')
        if not line.startswith('#') and fields[0] != 'key':
            rows[fields[0]] = fields
    return rows


def key_table_rows(text):
    """(key path, tag, saved when zero, versions) of each row of the struct tables of docs/gitlab-runner-config.md."""
    prefix = None
    for line in text.splitlines():
        caption = re.match(r'^(Top level of the file|`(\[\[?)([\w.]+)\]\]?`).*\(struct `', line)
        if caption:
            path = caption.group(3)
            if path is None:
                prefix = ''
                continue
            parts = path.split('.')
            parts[0] = 'runners[]' if parts[0] == 'runners' else parts[0]
            if caption.group(2) == '[[' and len(parts) > 1:
                parts[-1] += '[]'
            prefix = '.'.join(parts) + '.'
            continue
        row = re.match(r'^\| `([^`]+)` \| `[^`]+` \| (omitempty|omitzero|—) \| ([^|]+?) \| ([^|]+?) \|$', line)
        if row and prefix is not None:
            yield (prefix + row.group(1),) + row.groups()[1:]


@pytest.mark.skipif(not (SCHEMA / 'HEAD.tsv').exists(), reason='the per-version key tables are not in docs/ yet')
def test_runner_config_key_tables_match_schema():
    """The struct tables of docs/gitlab-runner-config.md say what the per-version schema files say."""
    versions = {name: read_schema(name + '.tsv') for name in ('v18.10.1', 'v19.3.0', 'HEAD')}
    rows = list(key_table_rows((ROOT / 'docs' / 'gitlab-runner-config.md').read_text(encoding='utf-8')))
    assert len(rows) > 150
    for path, tag, zero, present in rows:
        head = versions['HEAD'].get(path)
        assert head, '{0} is not in HEAD.tsv'.format(path)
        assert tag == ('omitempty' if head[3] else 'omitzero' if head[4] else '—'), path
        assert zero == head[5], path
        expected = ('all' if path in versions['v18.10.1'] else '19.3.0, main' if path in versions['v19.3.0'] else 'main')
        assert present == expected, path


def test_cited_pages_exist():
    """A page of docs/ that the code, tests or docs cite by section is in the repository."""
    this_file = Path(__file__).resolve()  # its comments show made-up citations as examples
    cited = {page for path in citing_files() if path.resolve() != this_file
             for page, _sections in CITATION.findall(path.read_text(encoding='utf-8'))}
    assert 'docs/gitlab-api.md' in cited
    missing = sorted(page for page in cited if not (ROOT / page).is_file())
    assert not missing, 'cited but not in the repository: {0}'.format(missing)


def test_gitlab_api_page_keeps_its_section_numbers():
    """Code comments cite docs/gitlab-api.md by section number: §1.0 to §1.12 stay, in this order."""
    numbers = [title.split()[0] for title in headings(ROOT / 'docs' / 'gitlab-api.md') if re.match(r'1\.\d+\s', title)]
    assert numbers == ['1.%d' % n for n in range(13)]
