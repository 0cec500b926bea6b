# shellcheck shell=sh
# Read-only look at a host for the docker role, in one round trip: the Docker packages installed and their
# source, /etc/docker/daemon.json as it is, a daemon.json change still waiting to be applied, docker.service and
# the running daemon, Docker repository definitions, the proxy drop-in, the prune timer's files. Changes nothing;
# prints one JSON object.
#
# Positional arguments (all given by the role):
#   1 repository host (e.g. download.docker.com)   2 the role's own repository file   3 repository key file
#   4 Python interpreter (only parses JSON)         5 packages to look for (space separated)
#   6 files of the prune timer (space separated)    7 the role's proxy drop-in of docker.service
# Every string printed is a package name or version, a path apt/dnf would read (file names limited to
# [A-Za-z0-9_.-]), a systemd state word, or base64: nothing needs JSON escaping.

repo_host=$1 own_repo=$2 key_file=$3 python=$4 packages=$5 prune_files=$6 dropin=$7
config=/etc/docker/daemon.json
pending=/etc/docker/daemon.json.pending

b64() { base64 -w0 <"$1" 2>/dev/null; }
word() { printf '%s' "$1" | tr -cd 'A-Za-z0-9_.:+~=/-'; }

# Installed packages among the ones asked for, as "name": "version".
installed=''
if command -v dpkg-query >/dev/null 2>&1; then
    # shellcheck disable=SC2016,SC2086  # dpkg-query's own format fields; $packages is a word list
    installed=$(dpkg-query -W -f '${db:Status-Abbrev} ${Package} ${Version}\n' $packages 2>/dev/null \
        | awk '$1 ~ /^[hi]i/ {printf "%s\"%s\": \"%s\"", sep, $2, $3; sep = ", "}')
elif command -v rpm >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    installed=$(rpm -q --qf '%{NAME} %{VERSION}\n' $packages 2>/dev/null \
        | awk 'NF == 2 {printf "%s\"%s\": \"%s\"", sep, $1, $2; sep = ", "}')
fi

# daemon.json: content, ownership, and whether it parses (an empty file counts as {}).
config_exists=false config_b64='' config_stat='' config_valid=false
if [ -f "$config" ]; then
    config_exists=true
    config_b64=$(b64 "$config")
    config_stat=$(stat -c '%a:%U:%G' "$config")
    if "$python" -c 'import json, sys; text = open(sys.argv[1]).read(); text.strip() and json.loads(text)' \
        "$config" >/dev/null 2>&1; then
        config_valid=true
    fi
fi

# A change written by an earlier run and not applied yet: its content and age.
pending_b64='' pending_age=-1
if [ -f "$pending" ]; then
    pending_b64=$(b64 "$pending")
    pending_age=$(( $(date +%s) - $(stat -c %Y "$pending") ))
fi

# docker.service and the daemon it runs.
unit=false active='' enabled='' daemon_age=-1 swarm='' live_restore='' server_version=''
if systemctl cat docker.service >/dev/null 2>&1; then
    unit=true
    active=$(systemctl is-active docker 2>/dev/null)
    enabled=$(systemctl is-enabled docker 2>/dev/null)
    pid=$(systemctl show -p MainPID docker 2>/dev/null | cut -d= -f2)
    if [ -n "$pid" ] && [ "$pid" -gt 0 ] 2>/dev/null && [ -r "/proc/$pid/stat" ]; then
        # seconds since the daemon started: uptime minus the process start time (field 22, in clock ticks)
        daemon_age=$(awk -v ticks="$(getconf CLK_TCK)" -v up="$(cut -d' ' -f1 /proc/uptime)" \
            '{sub(/^.*\) /, ""); printf "%d", up - $20 / ticks}' "/proc/$pid/stat")
        # shellcheck disable=SC2016  # a Go template, not a shell expansion
        info=$(docker info --format '{{.Swarm.LocalNodeState}} {{.LiveRestoreEnabled}} {{.ServerVersion}}' 2>/dev/null)
        swarm=$(word "$(echo "$info" | cut -d' ' -f1)")
        live_restore=$(word "$(echo "$info" | cut -d' ' -f2)")
        server_version=$(word "$(echo "$info" | cut -d' ' -f3)")
    fi
fi

# Repository definitions: the role's own file, and any other file that points at the same repository host.
own_repo_b64=''
[ -f "$own_repo" ] && own_repo_b64=$(b64 "$own_repo")
key_exists=false
[ -f "$key_file" ] && key_exists=true
host_pattern=$(printf '%s' "$repo_host" | sed 's/[.]/[.]/g')
stale=''
for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources /etc/yum.repos.d/*.repo; do
    if [ -f "$file" ] && [ "$file" != "$own_repo" ] && grep -Eq "^[^#]*://$host_pattern(:[0-9]+)?(/|[[:space:]]|\$)" "$file"; then
        stale="$stale${stale:+, }\"$(word "$file")\""
    fi
done

prune_found=''
for file in $prune_files; do
    [ -f "$file" ] && prune_found="$prune_found${prune_found:+, }\"$(word "$file")\""
done

dropin_b64=''
[ -f "$dropin" ] && dropin_b64=$(b64 "$dropin")

gpg=false
command -v gpg >/dev/null 2>&1 && gpg=true

printf '{"packages": {%s}, ' "$installed"
printf '"daemon_json": {"exists": %s, "content": "%s", "stat": "%s", "valid": %s}, ' \
    "$config_exists" "$config_b64" "$(word "$config_stat")" "$config_valid"
printf '"pending": {"content": "%s", "age": %s}, ' "$pending_b64" "$pending_age"
printf '"service": {"unit": %s, "active": "%s", "enabled": "%s", "age": %s}, ' \
    "$unit" "$(word "$active")" "$(word "$enabled")" "$daemon_age"
printf '"daemon": {"swarm": "%s", "live_restore": "%s", "version": "%s"}, ' "$swarm" "$live_restore" "$server_version"
printf '"repo": {"own": "%s", "key": %s, "stale": [%s]}, ' "$own_repo_b64" "$key_exists" "$stale"
printf '"proxy_dropin": "%s", "prune_files": [%s], "gpg": %s}\n' "$dropin_b64" "$prune_found" "$gpg"
