# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration fixtures: the real module, run by ansible-playbook, against the bundled fake GitLab."""

from __future__ import annotations

import json
import os
import secrets
import socket
import string
import subprocess
import sys
import sysconfig
import threading
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tools'))

from fake_gitlab.harness import FakeGitLabProcess  # noqa: E402  pylint: disable=wrong-import-position


def collections_path(tmp_root):
    """A collections tree where dood.gitlab_runner resolves to this checkout, plus the bundled collections."""
    tree = tmp_root / 'collections'
    link = tree / 'ansible_collections' / 'dood' / 'gitlab_runner'
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(ROOT)
    return '{0}:{1}'.format(tree, sysconfig.get_paths()['purelib'])


@pytest.fixture(scope='session')
def ansible_env(tmp_path_factory):
    root = tmp_path_factory.mktemp('ansible')
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': collections_path(root),
        'ANSIBLE_LOCAL_TEMP': str(root / 'tmp'),
        'ANSIBLE_HOME': str(root / 'home'),
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_DEPRECATION_WARNINGS': '1',
        'ANSIBLE_RETRY_FILES_ENABLED': '0',
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
    })
    for var in ('GITLAB_URL', 'GITLAB_API_TOKEN'):
        env.pop(var, None)
    return env


@pytest.fixture()
def gitlab():
    with FakeGitLabProcess() as server:
        yield server


class Result:
    def __init__(self, proc, data):
        self.proc = proc
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = data
        self.task = self.task_of(data)
        self.output = proc.stdout + proc.stderr

    @staticmethod
    def task_of(data):
        """The module's result for the host, from the ansible.posix.json callback's output."""
        found = None
        if data is not None:
            plays = data.get('plays') or []
            tasks = plays[0]['tasks'] if plays else []
            for task in tasks:
                hosts = task.get('hosts') or {}
                if hosts:
                    found = next(iter(hosts.values()))
        return found

    @property
    def changed(self):
        return bool(self.task.get('changed'))

    @property
    def failed(self):
        return bool(self.task.get('failed'))

    @property
    def msg(self):
        return self.task.get('msg', '')

    def actions(self):
        return dict((r['name'], r['action']) for r in self.task.get('runners', []))

    def __repr__(self):
        return 'Result(rc={0}, task={1!r})'.format(self.rc, self.task)


class Host:
    """One simulated host: its own config directory, the module run against it through ansible-playbook."""

    def __init__(self, root, env, name='host', system_id=None):
        self.root = root
        self.env = env
        self.name = name
        self.dir = root / name / 'gitlab-runner'
        self.dir.mkdir(parents=True, mode=0o700)
        self.path = self.dir / 'config.toml'
        if system_id:
            # Distinct machines have distinct system ids; hosts simulated on one machine get their own here.
            (self.dir / '.runner_system_id').write_text(system_id)
            (self.dir / '.runner_system_id').chmod(0o600)

    def playbook(self, params):
        # JSON is YAML: the module's arguments go into the generated playbook as they are, so the test
        # states exactly what a user would write (the file lives in the test's temporary directory only).
        args = dict({'path': str(self.path), 'allow_http': True}, **params)
        play = [{'hosts': 'localhost', 'gather_facts': False, 'tasks': [
            {'name': 'Reconcile config.toml', 'dood.gitlab_runner.runner_config': args},
        ]}]
        path = self.root / '{0}-play.yml'.format(self.name)
        path.write_text(json.dumps(play, indent=2))
        return path

    def run(self, params, check=False, diff=False, verbosity=0, json_output=True, extra_env=None):
        play = self.playbook(params)
        cmd = [str(Path(sys.executable).with_name('ansible-playbook')), '-i', 'localhost,', '-c', 'local', str(play)]
        if check:
            cmd.append('--check')
        if diff:
            cmd.append('--diff')
        if verbosity:
            cmd.append('-' + 'v' * verbosity)
        env = dict(self.env)
        if json_output:
            env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.posix.json'
        env.update(extra_env or {})
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
        data = None
        if json_output:
            try:
                data = json.loads(proc.stdout)
            except ValueError:
                raise AssertionError('ansible-playbook printed no JSON:\n' + proc.stdout[-3000:] + proc.stderr[-3000:])
        return Result(proc, data)

    def config(self):
        return tomllib.loads(self.path.read_text())

    def mode(self):
        return self.path.stat().st_mode & 0o7777

    def raw(self):
        return self.path.read_bytes() if self.path.exists() else None


@pytest.fixture()
def host(tmp_path, ansible_env):
    return Host(tmp_path, ansible_env)


@pytest.fixture()
def make_host(tmp_path, ansible_env):
    def make(name):
        alphabet = string.ascii_letters + string.digits
        return Host(tmp_path, ansible_env, name, system_id='r_' + ''.join(secrets.choice(alphabet) for _i in range(12)))
    return make


def ladder(run, params, first_action=None):
    """Check mode, apply, apply again, check again: the changed flags every behaviour must show."""
    check1 = run(params, check=True)
    assert not check1.failed, check1.msg
    assert check1.changed, 'check mode must predict the change'
    apply1 = run(params)
    assert not apply1.failed, apply1.msg
    assert apply1.changed
    apply2 = run(params)
    assert not apply2.failed, apply2.msg
    assert not apply2.changed, 'second apply must be idempotent: {0!r}'.format(apply2.task)
    check2 = run(params, check=True)
    assert not check2.failed, check2.msg
    assert not check2.changed
    if first_action:
        for name, action in apply1.actions().items():
            assert action == first_action, (name, action)
    return check1, apply1, apply2, check2


# -- helpers for fault, crash, concurrency and TLS tests ----------------------------------------------------------

class ModuleResult(Result):
    """The JSON a module printed when run directly (no ansible-playbook): the same accessors as Result."""

    @staticmethod
    def task_of(data):
        return data


def run_module_directly(host, params, check=False, extra_env=None, timeout=120):
    """Run the module the way Ansible's module protocol does (a JSON arguments file), without ansible-playbook.

    About five times faster than a playbook run; used where a test needs many runs (the fault matrix).
    """
    args = dict({'path': str(host.path), 'allow_http': True}, **params)
    if check:
        args['_ansible_check_mode'] = True
    argfile = host.root / '{0}-args.json'.format(host.name)
    argfile.touch(mode=0o600)
    argfile.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
    env = dict(host.env)
    env['PYTHONPATH'] = host.env['ANSIBLE_COLLECTIONS_PATH'].split(':')[0]
    env.update(extra_env or {})
    cmd = [sys.executable, '-m', 'ansible_collections.dood.gitlab_runner.plugins.modules.runner_config', str(argfile)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        argfile.unlink()
    data = None
    for line in reversed(proc.stdout.strip().splitlines()):
        try:
            data = json.loads(line)
            break
        except ValueError:
            continue
    if data is None:
        raise AssertionError('the module printed no JSON:\n' + proc.stdout[-3000:] + proc.stderr[-3000:])
    return ModuleResult(proc, data)


Host.module = run_module_directly


class TcpGate:
    """A loopback TCP relay in front of the fake GitLab that can fail whole connections.

    ``refuse_from(n)``: connections 1..n-1 (counted from the call) pass, then the listening socket is closed, so
    connection n and later ones are refused. ``impostor_from(n, port)``: connection n and later ones are relayed to
    another server (one whose TLS certificate does not verify). ``normal()`` restores plain relaying on the same port.
    """

    def __init__(self, backend_port):
        self.backend_port = backend_port
        self.port = None
        self.accepted = 0
        self._refuse_at = None
        self._impostor = None
        self._listener = None
        self._lock = threading.Lock()
        self._open()

    def _open(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(('127.0.0.1', self.port or 0))
        listener.listen(64)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()

    def _close_listener(self):
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _accept_loop(self, listener):
        while True:
            with self._lock:
                if listener is not self._listener:
                    return
            try:
                conn, _addr = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                number = self.accepted
                port = self.backend_port
                if self._impostor and number >= self._impostor[0]:
                    port = self._impostor[1]
                if self._refuse_at is not None and number + 1 >= self._refuse_at:
                    self._close_listener()
            threading.Thread(target=self._relay, args=(conn, port), daemon=True).start()

    @staticmethod
    def _relay(client, port):
        try:
            upstream = socket.create_connection(('127.0.0.1', port), timeout=30)
        except OSError:
            client.close()
            return

        def pump(src, dst):
            try:
                while True:
                    chunk = src.recv(65536)
                    if not chunk:
                        break
                    dst.sendall(chunk)
            except OSError:
                pass
            for sock in (dst, src):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join(30)
        client.close()
        upstream.close()

    def refuse_from(self, number):
        with self._lock:
            self.accepted = 0
            self._refuse_at = number
            if number <= 1:
                self._close_listener()

    def impostor_from(self, number, port):
        with self._lock:
            self.accepted = 0
            self._impostor = (number, port)

    def normal(self):
        with self._lock:
            self._refuse_at = None
            self._impostor = None
            self.accepted = 0
            reopen = self._listener is None
        if reopen:
            self._open()

    def close(self):
        with self._lock:
            self._close_listener()


def make_tls_material(directory):
    """A private CA, a server certificate it signed for localhost/127.0.0.1, and a self-signed impostor certificate."""
    from datetime import datetime as _dt, timedelta  # pylint: disable=import-outside-toplevel
    import ipaddress  # pylint: disable=import-outside-toplevel
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes, serialization  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives.asymmetric import ec  # pylint: disable=import-outside-toplevel
    from cryptography.x509.oid import NameOID  # pylint: disable=import-outside-toplevel

    now = _dt.utcnow() - timedelta(minutes=5)

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def write(path, data):
        path.touch(mode=0o600)
        path.write_bytes(data)
        return str(path)

    def pem_key(private):
        return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def leaf(subject_key, issuer_name, issuer_key, common_name):
        return (x509.CertificateBuilder().subject_name(name(common_name)).issuer_name(issuer_name)
                .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName('localhost'),
                                                            x509.IPAddress(ipaddress.ip_address('127.0.0.1'))]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
                .sign(issuer_key, hashes.SHA256()))

    ca_key = key()
    ca_cert = (x509.CertificateBuilder().subject_name(name('dood test CA')).issuer_name(name('dood test CA'))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    server_key = key()
    server_cert = leaf(server_key, ca_cert.subject, ca_key, 'localhost')
    impostor_key = key()
    impostor_cert = leaf(impostor_key, name('localhost'), impostor_key, 'localhost')
    pem = serialization.Encoding.PEM
    return {
        'ca': write(directory / 'ca.pem', ca_cert.public_bytes(pem)),
        'ca_pem': ca_cert.public_bytes(pem).decode(),
        'cert': write(directory / 'server.pem', server_cert.public_bytes(pem)),
        'key': write(directory / 'server-key.pem', pem_key(server_key)),
        'impostor_cert': write(directory / 'impostor.pem', impostor_cert.public_bytes(pem)),
        'impostor_key': write(directory / 'impostor-key.pem', pem_key(impostor_key)),
    }


@pytest.fixture(scope='session')
def tls_material(tmp_path_factory):
    return make_tls_material(tmp_path_factory.mktemp('tls'))


KILL_HOOK = '''
import fcntl, json, os, re, signal, sys
_spec = os.environ.get('DOOD_TEST_KILL_AT')
if _spec:
    _spec = json.loads(_spec)

    def _hook(event, args):
        if event != _spec['event']:
            return
        try:
            value = os.fsdecode(args[_spec.get('arg', 0)])
        except Exception:
            return
        if not re.search(_spec['match'], value):
            return
        # Counted across processes: the module's work may be spread over several (the controller's host calls).
        with open(_spec['counter'], 'a+') as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            seen = len(handle.read()) + 1
            handle.write('.')
        if seen == _spec.get('nth', 1):
            os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(_hook)
'''


def kill_env(tmp_root, event, match, arg=0, nth=1):
    """Environment that SIGKILLs the Python process at the nth audit ``event`` (counted over every process of the run)
    whose argument ``arg`` matches ``match``.

    A sitecustomize file outside the collection installs the audit hook (PEP 578), so the module under test holds no
    test switch: the kill hits the real code at the real system call, e.g. ``os.rename`` of the temporary file onto
    config.toml.
    """
    hook_dir = tmp_root / 'killhook'
    hook_dir.mkdir(exist_ok=True)
    (hook_dir / 'sitecustomize.py').write_text(KILL_HOOK)
    counter = hook_dir / 'count-{0}'.format(secrets.token_hex(4))
    spec = {'event': event, 'match': match, 'arg': arg, 'nth': nth, 'counter': str(counter)}
    return {'PYTHONPATH': str(hook_dir), 'DOOD_TEST_KILL_AT': json.dumps(spec)}
