# -*- coding: utf-8 -*-
# Copyright (c) dood.gitlab_runner contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How a runner gets and keeps its token: the GitLab calls that create runners, find the ones a lost answer left
behind, undo a creation whose token could not be kept, and renew a token that expires.

Every creation goes through the store's ``journaled_create`` (the pending record is on disk before the request), and
every call that cannot be undone is preceded by the store's ``claim``.
"""

from __future__ import annotations

import os
import tempfile

from datetime import datetime, timedelta, timezone

from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.dood.gitlab_runner.plugins.module_utils import config_toml
from ansible_collections.dood.gitlab_runner.plugins.module_utils.gitlab_api import GitLabClient, GitLabError, scope_path_for
from ansible_collections.dood.gitlab_runner.plugins.module_utils._runner_config.model import (
    RunnerConfigError, epoch, iso, owned_fields,
)

# A creation recorded as pending this long before GitLab's created_at still matches (clocks of host and GitLab differ).
CLOCK_SKEW = 300


class RunFailed(Exception):
    """The run stops: ``msg`` for the user (masked by the glue), ``runners`` done so far."""

    def __init__(self, msg, runners=None):
        super().__init__(msg)
        self.msg = msg
        self.runners = runners


class Tokens:
    """The token side of the reconciler. ``results`` is the reconciler's list of runner results (for failures)."""

    def __init__(self, ctx, params, store, results):
        self.ctx = ctx
        self.params = params
        self.store = store
        self.results = results
        self.check_mode = ctx.check_mode
        self.clients = {}
        self.ca_files = {}
        self.system_id = None

    # -- connections -------------------------------------------------------------------------------------------------
    def ca_file(self, runner):
        """The CA bundle file for a runner: ca_path, or ca_content written to a private file of this run."""
        if not runner.ca_content:
            return runner.ca_path
        if runner.ca_content not in self.ca_files:
            fd, path = tempfile.mkstemp(prefix='gitlab-ca-', suffix='.pem', dir=self.ctx.tmpdir)
            with os.fdopen(fd, 'wb') as handle:
                handle.write(to_bytes(runner.ca_content))
            self.ca_files[runner.ca_content] = path
        return self.ca_files[runner.ca_content]

    def client(self, runner):
        ca_path = self.ca_file(runner)
        key = (runner.url, runner.validate_certs, ca_path, runner.timeout)
        if key not in self.clients:
            self.clients[key] = GitLabClient(runner.url, validate_certs=runner.validate_certs, ca_path=ca_path,
                                             timeout=runner.timeout, retries=self.params['retries'],
                                             backoff=self.params['retry_delay'], max_backoff=self.params['retry_max_delay'])
        return self.clients[key]

    def owned(self, runner_id, data):
        """The runner-owned fields for a token GitLab just sent, the token registered as a secret first."""
        data = data or {}
        return owned_fields(runner_id, self.ctx.secret(data.get('token')), data.get('token_expires_at'))

    # -- getting a token ---------------------------------------------------------------------------------------------
    def obtain(self, runner):
        """Get a token for a runner that has none, by its one credential source. Returns the runner-owned fields."""
        api = self.client(runner)
        source = runner.source
        if source == 'token':
            data = api.verify(runner.params['token'], self.system_id)
            if data is None:
                raise RunnerConfigError(
                    'GitLab rejected the token of runner {0!r} (403 for POST /api/v4/runners/verify): the runner was deleted, '
                    'or its token was reset or expired. Create a new runner authentication token in GitLab (Settings > CI/CD > '
                    'Runners) and put it in token, or let the module create the runner with runner_type and '
                    'api_token.'.format(runner.name))
            token = runner.params['token']
        elif source == 'registration_token':
            self.ctx.deprecate('Runner {0!r} uses a registration token. GitLab disabled registration tokens by default in 17.0 '
                               'and plans to remove them in 20.0; create runners with runner_type and api_token '
                               'instead.'.format(runner.name), version='2.0.0')
            settings = runner.creation_settings()
            data = self.create(runner, settings, lambda: api.register_legacy(runner.params['registration_token'], settings))
            token = self.ctx.secret(data.get('token'))
        else:
            settings = self.user_runner_settings(runner)
            data = self.create(runner, settings, lambda: api.create_user_runner(runner.api_token, settings))
            token = self.ctx.secret(data.get('token'))
        if not token:
            raise RunnerConfigError('GitLab created runner {0!r} but returned no token; check that the URL points to '
                                    'GitLab.'.format(runner.name))
        return owned_fields(data.get('id'), token, data.get('token_expires_at'))

    @staticmethod
    def user_runner_settings(runner):
        """The body of POST /user/runners for a runner created with runner_type and api_token (docs/gitlab-api.md §1.3)."""
        settings = runner.creation_settings()
        settings['runner_type'] = runner.params['runner_type']
        if runner.params.get('group_id') is not None:
            settings['group_id'] = runner.params['group_id']
        if runner.params.get('project_id') is not None:
            settings['project_id'] = runner.params['project_id']
        return settings

    @staticmethod
    def pending_of(runner, settings):
        """(name, description, runner_type, scope) of the journal record for a creation."""
        kind = settings.get('runner_type')
        scope = scope_path_for(kind, settings.get('group_id'), settings.get('project_id')) if kind else None
        return runner.name, settings.get('description'), kind, scope

    def create(self, runner, settings, send):
        return self.store.journaled_create(*self.pending_of(runner, settings), send=send)

    def journal_creations(self, declared):
        """Write ahead, in one host write, the pending records of every runner this run will create with an API token.

        ``declared`` is a list of (runner, entry, record). A runner qualifies when it is present, has no token in
        config.toml, no pending creation and no id this host knows (those take other paths), and is created with
        runner_type and api_token, so that a lost answer is found again through the API. Returns their names: their
        token writes can wait for the run's next write (see Reconciler.run), which saves one host call per runner.
        """
        if self.check_mode:
            return set()
        ahead = [self.pending_of(runner, self.user_runner_settings(runner)) for runner, entry, record in declared
                 if runner.state == 'present' and runner.source == 'runner_type' and runner.api_token
                 and not (entry or {}).get('token') and not self.store.pending(runner.name)
                 and not int(record.get('id') or 0)]
        if ahead:
            self.store.journal_creations(ahead)
        return set(item[0] for item in ahead)

    def recover_pending(self, runner, pending, adopt=True):
        """A creation whose answer was lost: adopt the runner GitLab made then, delete extra ones (docs/gitlab-api.md §1.8).

        Returns the runner-owned fields of the adopted runner, or None when there is none (then a new one is made).
        """
        name = runner.name
        if not runner.api_token:
            self.ctx.warn('Runner {0!r}: a run at {1} asked GitLab to create it but never got the answer, and without api_token '
                          'the module cannot look for that runner. If GitLab lists a runner with description {2!r} created then '
                          'that never contacted GitLab, delete it (Admin > CI/CD > Runners, or the group or project runners '
                          'page).'.format(name, pending.get('time'), pending.get('description')))
            return None
        api = self.client(runner)
        query = {'type': pending['runner_type']} if pending.get('runner_type') else {}
        scopes = [pending['scope']] if pending.get('scope') else ['/runners/all', '/runners']
        listed = failure = None
        for scope in scopes:
            try:
                listed = api.list_runners(runner.api_token, scope, query)
                break
            except GitLabError as exc:
                if exc.status not in (401, 403, 404):
                    raise
                failure = exc
        if listed is None:
            self.ctx.warn('Runner {0!r}: a run at {1} asked GitLab to create it but never got the answer, and the api_token '
                          'cannot list the runners to find it ({2}). If GitLab lists a runner with description {3!r} created '
                          'then that never contacted GitLab, delete it.'.format(name, pending.get('time'), failure.describe(),
                                                                                pending.get('description')))
            return None
        known = self.store.known_ids()
        since = int(pending.get('at') or 0) - CLOCK_SKEW
        found = []
        for item in listed:
            if not isinstance(item, dict) or item.get('description') != pending.get('description'):
                continue
            if item.get('status') != 'never_contacted' or int(item.get('id') or 0) in known:
                continue
            if epoch(item.get('created_at')) < since:
                continue
            found.append(item)
        found.sort(key=lambda item: int(item['id']))
        keep = found[0] if found and adopt else None
        if found:
            self.store.claim()
        for extra in found:
            if extra is not keep:
                api.delete_runner(runner.api_token, int(extra['id']))
        if keep is None:
            return None
        return self.owned(keep['id'], api.reset_token_by_id(runner.api_token, int(keep['id'])))

    def undo_creations(self, created, exc):
        """config.toml could not take the tokens of the runners just created (a list of (runner, owned)): delete them
        again (docs/gitlab-api.md §1.5), so that GitLab keeps no runner this host does not know."""
        why = 'could not write {0} ({1})'.format(self.store.path, exc.strerror or exc)
        failed = []
        for runner, owned in created:
            try:
                self.client(runner).delete_by_token(owned['token'])
            except GitLabError as err:
                failed.append((runner, owned, err))
                continue
            self.store.clear_pending(runner.name)
        if failed:
            runner, owned, err = failed[0]
            msg = ('Runner {0!r} was created in GitLab (id {1}) but the module {2}, and deleting it again failed too: {3}. '
                   'The next run with api_token finds and adopts it; otherwise delete runner {1} in GitLab. Make {4} '
                   'writable, then run again.'.format(runner.name, owned.get('id'), why, err.describe(), self.store.dir))
            raise RunFailed(msg, self.results)
        try:
            self.store.save()
        except (IOError, OSError):
            pass
        names = ', '.join(repr(runner.name) for runner, _owned in created)
        ids = ', '.join(str(owned.get('id')) for _runner, owned in created)
        if len(created) == 1:
            raise RunFailed('Runner {0}: the module {1} after GitLab created the runner (id {2}), so it deleted that runner '
                            'again (DELETE /api/v4/runners) and GitLab holds no runner this host does not know. Make {3} '
                            'writable, then run again.'.format(names, why, ids, self.store.dir), self.results)
        raise RunFailed('Runners {0}: the module {1} after GitLab created them (ids {2}), so it deleted them again (DELETE '
                        '/api/v4/runners) and GitLab holds no runner this host does not know. Make {3} writable, then run '
                        'again.'.format(names, why, ids, self.store.dir), self.results)

    def renewal(self, runner, entry):
        """New runner-owned fields when the token in config.toml expires soon (docs/gitlab-api.md §1.7,
        docs/gitlab-runner-config.md §2.8), else None."""
        expires = entry.get('token_expires_at')
        if not isinstance(expires, datetime) or expires == config_toml.ZERO_TIME:
            return None
        now = datetime.now(timezone.utc)
        window = timedelta(days=self.params['token_renewal_days'])
        obtained = entry.get('token_obtained_at')
        if isinstance(obtained, datetime) and obtained != config_toml.ZERO_TIME and expires > obtained:
            if window >= expires - obtained:
                # A short-lived token: renew in the last quarter of its life like gitlab-runner, not on every run.
                window = (expires - obtained) / 4
        if expires - now > window:
            return None
        expired = expires <= now
        when = iso(expires)
        runner_id = int(entry.get('id') or 0)
        if runner.source == 'token':
            if expired:
                raise RunnerConfigError('The token of runner {0!r} (id {1}) expired at {2}, so gitlab-runner cannot use it. '
                                        'Reset it in GitLab (the runner\'s page, or POST /api/v4/runners/{1}/'
                                        'reset_authentication_token) and put the new token in token.'.format(runner.name, runner_id, when))
            self.ctx.warn('The token of runner {0!r} (id {1}) expires at {2}. It was given with token and may be shared with '
                          'other hosts, so the module does not rotate it: reset it in GitLab and put the new token in token '
                          'for every host.'.format(runner.name, runner_id, when))
            return None
        if not (runner.api_token and runner_id > 0):
            if expired:
                raise RunnerConfigError('The token of runner {0!r} (id {1}) expired at {2} and there is no api_token to renew '
                                        'it. Set api_token (scope manage_runner) so the module resets it by id, or run '
                                        '"gitlab-runner reset-token --id {1} --pat ..." on this host.'.format(runner.name, runner_id, when))
            # gitlab-runner renews it itself while it runs (docs/gitlab-runner-config.md §2.8). The module does not use
            # the runner's own token for that: a lost answer would leave a dead token and no way to get a new one
            # without an API token.
            self.ctx.warn('The token of runner {0!r} (id {1}) expires at {2}. gitlab-runner renews it by itself while it runs; '
                          'if the runner is stopped until then, set api_token so the module can renew it by id.'.format(
                              runner.name, runner_id, when))
            return None
        if self.check_mode:
            return dict(entry)
        self.store.claim()
        return self.owned(runner_id, self.client(runner).reset_token_by_id(runner.api_token, runner_id))
