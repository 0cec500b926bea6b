# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write docs/roles.md, the role variable reference, from every roles/*/meta/argument_specs.yml.

The argument specs are the one source of the variables' documentation (ansible-core validates them at run time and
ansible-doc shows them); this file only renders them as Markdown for readers of the repository.

    python scripts/gen_role_docs.py           # (re)write docs/roles.md
    python scripts/gen_role_docs.py --check   # exit 1 and print a diff when docs/roles.md is out of date
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = Path('docs') / 'roles.md'
COLLECTION = 'dood.gitlab_runner'

# Ansible documentation markup (the classic and the semantic forms): the argument is everything up to the first ')'.
MARKUP = re.compile(r'\b(?P<kind>C|V|O|RV|E|I|B|M|P|U)\((?P<arg>[^)]*)\)|\bL\((?P<text>[^,)]*),\s*(?P<url>[^)]*)\)')


def anchor(role, entry_point, option):
    """GitHub-style anchor for an option heading; unique across roles and entry points."""
    return '{0}-{1}-{2}'.format(role, entry_point, option).lower().replace('_', '-').replace('.', '-')


def code(text):
    """Inline code that survives backticks inside the text."""
    text = str(text)
    fence = '``' if '`' in text else '`'
    pad = ' ' if text.startswith('`') or text.endswith('`') else ''
    return '{0}{1}{2}{1}{0}'.format(fence, pad, text)


def markup(text, role, entry_point, options):
    """Ansible markup to Markdown. O(name) links to the option's own section when it belongs to this entry point."""
    def replace(match):
        if match.group('text') is not None:
            return '[{0}]({1})'.format(match.group('text').strip(), match.group('url').strip())
        kind, arg = match.group('kind'), match.group('arg')
        if kind == 'O':
            name = arg.split('=', 1)[0]
            if name in options:
                return '[{0}](#{1})'.format(code(arg), anchor(role, entry_point, name))
            return code(arg)
        if kind in ('C', 'V', 'RV', 'E'):
            return code(arg)
        if kind == 'I':
            return '*{0}*'.format(arg)
        if kind == 'B':
            return '**{0}**'.format(arg)
        if kind == 'U':
            return '<{0}>'.format(arg)
        if kind == 'P':
            arg = arg.split('#', 1)[0]
        fqcn = arg
        if fqcn.startswith(COLLECTION + '.'):
            short = fqcn[len(COLLECTION) + 1:]
            if (ROOT / 'roles' / short).is_dir():
                return '[{0}](#{1})'.format(code(fqcn), 'role-' + short)
        return code(fqcn)

    return MARKUP.sub(replace, ' '.join(str(text).split()))


def paragraphs(value):
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def yaml_block(value):
    return '```yaml\n' + yaml.safe_dump(value, default_flow_style=False, sort_keys=False, width=100).rstrip() + '\n```'


def inline_default(value):
    """A default short enough for one line, or None when it needs a block."""
    if isinstance(value, (dict, list)):
        if not value:
            return code('{}' if isinstance(value, dict) else '[]')
        return None
    if isinstance(value, bool):
        return code('true' if value else 'false')
    if isinstance(value, str):
        return code(value) if value else code('""')
    return code(value)


def render_options(lines, options, role, entry_point, names, depth, prefix=''):
    for name, spec in options.items():
        spec = spec or {}
        full = prefix + name
        heading = '#' * min(depth, 6)
        lines.append('{0} {1}'.format(heading, code(full)))
        lines.append('<a id="{0}"></a>'.format(anchor(role, entry_point, full)))
        lines.append('')
        kind = spec.get('type', 'str')
        facts = ['Type: ' + code(kind + (' of ' + spec['elements'] if spec.get('elements') else ''))]
        if spec.get('required'):
            facts.append('**required**')
        block = None
        if 'default' in spec:
            short = inline_default(spec['default'])
            if short is None:
                facts.append('Default: see below')
                block = spec['default']
            else:
                facts.append('Default: ' + short)
        if spec.get('choices'):
            facts.append('Choices: ' + ', '.join(code(choice) for choice in spec['choices']))
        if spec.get('version_added'):
            facts.append('Added in ' + code(spec['version_added']))
        lines.append(' · '.join(facts))
        lines.append('')
        for text in paragraphs(spec.get('description')):
            lines.append(markup(text, role, entry_point, names))
            lines.append('')
        if block is not None:
            lines.append('Default:')
            lines.append('')
            lines.append(yaml_block(block))
            lines.append('')
        if spec.get('options'):
            render_options(lines, spec['options'], role, entry_point, names, depth + 1, prefix=full + '.')


def option_names(options, prefix=''):
    names = set()
    for name, spec in (options or {}).items():
        names.add(prefix + name)
        names |= option_names((spec or {}).get('options'), prefix + name + '.')
    return names


def render(root):
    roles = sorted(path.parent.parent for path in (root / 'roles').glob('*/meta/argument_specs.yml'))
    lines = [
        '<!-- Generated by scripts/gen_role_docs.py from roles/*/meta/argument_specs.yml. Do not edit by hand:',
        '     change the argument specs (and defaults/main.yml) and run `python scripts/gen_role_docs.py`. -->',
        '',
        '# Role variable reference',
        '',
        'Every variable of every role of `{0}`, from the roles\' argument specs (`meta/argument_specs.yml`),'.format(COLLECTION),
        'which ansible-core also uses to validate the variables before a role runs. The same text is shown by',
        '`ansible-doc -t role {0}.<role>`. Module options: `ansible-doc {0}.<module>`.'.format(COLLECTION),
        '',
    ]
    for role_dir in roles:
        lines.append('- [{0}.{1}](#role-{1})'.format(COLLECTION, role_dir.name))
    lines.append('')
    for role_dir in roles:
        role = role_dir.name
        specs = yaml.safe_load((role_dir / 'meta' / 'argument_specs.yml').read_text(encoding='utf-8')) or {}
        entry_points = specs.get('argument_specs') or {}
        lines.append('<a id="role-{0}"></a>'.format(role))
        lines.append('')
        lines.append('## Role {0}'.format(code(COLLECTION + '.' + role)))
        lines.append('')
        for entry_point in sorted(entry_points, key=lambda name: (name != 'main', name)):
            spec = entry_points[entry_point] or {}
            options = spec.get('options') or {}
            names = option_names(options)
            if len(entry_points) > 1 or entry_point != 'main':
                lines.append('### Entry point {0}'.format(code(entry_point)))
                lines.append('')
            if spec.get('short_description'):
                lines.append('**{0}**'.format(markup(spec['short_description'], role, entry_point, names)))
                lines.append('')
            for text in paragraphs(spec.get('description')):
                lines.append('- ' + markup(text, role, entry_point, names))
            lines.append('')
            lines.append('| Variable | Type | Default |')
            lines.append('|---|---|---|')
            for name, option in options.items():
                option = option or {}
                default = inline_default(option['default']) if 'default' in option else ''
                lines.append('| [{0}](#{1}) | {2} | {3} |'.format(
                    code(name), anchor(role, entry_point, name), option.get('type', 'str'),
                    ('**required**' if option.get('required') else (default or 'see below')).replace('|', '\\|')))
            lines.append('')
            render_options(lines, options, role, entry_point, names, depth=4)
    while lines and lines[-1] == '':
        lines.pop()
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='fail when the file on disk differs from the generated one')
    parser.add_argument('--root', type=Path, default=ROOT, help='collection root (default: this checkout)')
    args = parser.parse_args(argv)
    target = args.root / OUTPUT
    text = render(args.root)
    current = target.read_text(encoding='utf-8') if target.exists() else ''
    if args.check:
        if current != text:
            sys.stdout.writelines(difflib.unified_diff(current.splitlines(True), text.splitlines(True), str(OUTPUT), 'generated'))
            print('{0} is out of date: run `python scripts/gen_role_docs.py` and commit the result.'.format(OUTPUT), file=sys.stderr)
            return 1
        print('{0} is up to date with roles/*/meta/argument_specs.yml'.format(OUTPUT))
        return 0
    if current != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding='utf-8')
        print('wrote {0}'.format(OUTPUT))
    else:
        print('{0} unchanged'.format(OUTPUT))
    return 0


if __name__ == '__main__':
    sys.exit(main())
