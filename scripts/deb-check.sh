#!/usr/bin/env bash
# `make deb-check`: checks the package that `make deb` built (or the .deb given as $1).
#
#   1. contents (dpkg-deb -c): every expected file with its mode, owned by root, nothing else;
#      the conffiles; the maintainer scripts; the control fields;
#   2. the env file holds no secret, and the units point at the package's paths and user;
#   3. the man pages: every flag that the packaged binary's --help mentions is an item of the
#      page's OPTIONS section, and man (as lintian runs it) and groff -ww render it without a
#      warning;
#   4. lintian (installed with apt-get when missing and root, as scripts/bench.sh installs wrk):
#      no errors; warnings and informational tags are listed, overrides are in
#      packaging/lintian-overrides;
#   5. as root, on this machine: dpkg -i, then the installed files, the system user, the units
#      enabled but not started, systemd-analyze verify on the installed units, a reinstall
#      (an upgrade's path), dpkg -r (conffiles kept), dpkg --purge, and nothing left behind.
#      The machine is changed only for the length of the check: it is skipped when event-system
#      is already installed or its user or /etc/event-system already exists, so a real
#      installation is never touched. DEB_CHECK_INSTALL=0 skips it. What cannot be checked
#      without systemd as PID 1 (that nothing was started, that prerm stops the services) is
#      said as "not checked".
# Each check prints ok:, FAILED: or skipped:; the run fails when any check failed.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

readonly package=event-system user=event-system
readonly bins=(event_consumer event_propagator)
readonly units=(event-consumer.service event-propagator.service event-propagator-batch.service event-propagator-batch.timer)

for tool in dpkg-deb dpkg groff man gzip; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install dpkg groff man-db)"
done

arch=$(dpkg --print-architecture)
if (($#)); then
    deb=$1
else
    target_dir=${CARGO_TARGET_DIR:-target}
    [[ $target_dir == /* ]] || target_dir=$repo/$target_dir
    shopt -s nullglob
    debs=("$target_dir/deb/${package}_"*"_$arch.deb")
    shopt -u nullglob
    ((${#debs[@]} == 1)) || die "expected one $target_dir/deb/${package}_*_$arch.deb, found ${#debs[@]}: run make deb first"
    deb=${debs[0]}
fi
[[ -f $deb ]] || die "$deb: no such file"

passed=0 failed=0
ok() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAILED: $1"; failed=$((failed + 1)); }
skip() { echo "skipped: $1"; }
not_checked() { echo "not checked: $1"; }

installed_by_us=0
tmp=$(mktemp -d)
cleanup() {
    # A check that stopped half-way must not leave the package on the machine.
    if ((installed_by_us)) && dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -qv 'not-installed'; then
        echo "deb-check: purging $package after an interrupted check" >&2
        dpkg --purge "$package" >/dev/null 2>&1 || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "deb-check: $deb"

# --- 1. contents ---------------------------------------------------------------------------
declare -A want=(
    [./usr/bin/event_consumer]=-rwxr-xr-x
    [./usr/bin/event_propagator]=-rwxr-xr-x
    [./etc/event-system/config.yaml]=-rw-r--r--
    [./etc/event-system/events.json]=-rw-r--r--
    [./etc/event-system/event-system.env]=-rw-------
    [./lib/systemd/system/event-consumer.service]=-rw-r--r--
    [./lib/systemd/system/event-propagator.service]=-rw-r--r--
    [./lib/systemd/system/event-propagator-batch.service]=-rw-r--r--
    [./lib/systemd/system/event-propagator-batch.timer]=-rw-r--r--
    [./usr/share/man/man1/event_consumer.1.gz]=-rw-r--r--
    [./usr/share/man/man1/event_propagator.1.gz]=-rw-r--r--
    [./usr/share/doc/event-system/copyright]=-rw-r--r--
    [./usr/share/doc/event-system/changelog.Debian.gz]=-rw-r--r--
    [./usr/share/doc/event-system/README.Debian]=-rw-r--r--
    [./usr/share/event-system/db_init_script.sh]=-rwxr-xr-x
    [./usr/share/event-system/schema.sql]=-rw-r--r--
    [./usr/share/lintian/overrides/event-system]=-rw-r--r--
)
listing=$(dpkg-deb -c "$deb") || die "dpkg-deb -c $deb failed"
declare -A have=()
problems=()
while read -r mode owner _size _date _time path rest; do
    [[ -z $rest ]] || problems+=("$path: an entry with a space or a link ($rest)")
    [[ $owner == root/root ]] || problems+=("$path is owned by $owner, not root/root")
    case $mode in
    d*) [[ $mode == drwxr-xr-x ]] || problems+=("directory $path has mode $mode, not drwxr-xr-x") ;;
    -*) have[$path]=$mode ;;
    *) problems+=("$path is neither a file nor a directory ($mode)") ;;
    esac
done <<<"$listing"
for path in "${!want[@]}"; do
    if [[ -z ${have[$path]:-} ]]; then
        problems+=("$path is missing")
    elif [[ ${have[$path]} != "${want[$path]}" ]]; then
        problems+=("$path has mode ${have[$path]}, not ${want[$path]}")
    fi
done
for path in "${!have[@]}"; do
    [[ -n ${want[$path]:-} ]] || problems+=("$path is not expected in the package (add it to deb-check.sh's list if it should be)")
done
if ((${#problems[@]} == 0)); then
    ok "contents: ${#want[@]} files with their modes (env file 0600, binaries 0755), all root/root, nothing else"
else
    fail "contents: $(printf '%s; ' "${problems[@]}")"
fi

mkdir -p "$tmp/control" "$tmp/root"
dpkg-deb --control "$deb" "$tmp/control" || die "dpkg-deb --control $deb failed"
dpkg-deb --extract "$deb" "$tmp/root" || die "dpkg-deb --extract $deb failed"

want_conffiles=$(printf '%s\n' "${!want[@]}" | sed -n 's#^\./etc/#/etc/#p' | sort)
have_conffiles=$(sort "$tmp/control/conffiles" 2>/dev/null || true)
if [[ $have_conffiles == "$want_conffiles" ]]; then
    ok "conffiles: every file under /etc and nothing else ($(echo "$have_conffiles" | tr '\n' ' '))"
else
    fail "conffiles: DEBIAN/conffiles lists '$(echo "$have_conffiles" | tr '\n' ' ')', the files under /etc are '$(echo "$want_conffiles" | tr '\n' ' ')'"
fi

problems=()
for s in postinst prerm postrm; do
    [[ -x $tmp/control/$s ]] || problems+=("DEBIAN/$s is missing or not executable")
done
# Policy for daemons that need configuration first: enabled, never started by the installation.
if grep -nE '(deb-systemd-invoke|systemctl)[^#]* (start|restart|reload-or-restart)( |$)' "$tmp/control/postinst" >"$tmp/starts"; then
    problems+=("postinst starts a unit on installation: $(tr '\n' ' ' <"$tmp/starts")")
fi
grep -q 'deb-systemd-invoke stop' "$tmp/control/prerm" || problems+=("prerm does not stop the units")
grep -q 'deb-systemd-helper purge' "$tmp/control/postrm" || problems+=("postrm does not purge the units' enablement state")
if ((${#problems[@]} == 0)); then
    ok "maintainer scripts: postinst, prerm, postrm present; postinst starts nothing, prerm stops, postrm purges"
else
    fail "maintainer scripts: $(printf '%s; ' "${problems[@]}")"
fi

field() { sed -n "s/^$1: //p" "$tmp/control/control"; }
name=${deb##*/}
expect_name="$(field Package)_$(field Version)_$(field Architecture).deb"
problems=()
[[ $name == "$expect_name" ]] || problems+=("the file is $name, the control fields say $expect_name")
[[ $(field Architecture) == "$arch" ]] || problems+=("Architecture $(field Architecture), this machine is $arch")
[[ $(field Depends) =~ libc6\ \(\>=\ [0-9] ]] || problems+=("Depends '$(field Depends)' has no versioned libc6")
[[ $(field Depends) == *adduser* ]] || problems+=("Depends lacks adduser (postinst runs it)")
[[ -n $(field Maintainer) && -n $(field Description) ]] || problems+=("Maintainer or Description is empty")
if ((${#problems[@]} == 0)); then
    ok "control: $expect_name, Depends: $(field Depends)"
else
    fail "control: $(printf '%s; ' "${problems[@]}")"
fi

# --- 2. no secrets, units -------------------------------------------------------------------
env_file=$tmp/root/etc/event-system/event-system.env
secrets=$(grep -nE '^[[:space:]]*(export[[:space:]]+)?(DB_PASSWORD|[A-Z_]*(TOKEN|SECRET|KEY))=.+' "$env_file" | cut -d= -f1 || true)
if [[ -n $secrets ]]; then
    # The variable's name and line only: never the value.
    fail "env file: a secret has a value in the package: $(echo "$secrets" | tr '\n' ' ')"
elif ! grep -qx 'DB_PASSWORD=' "$env_file"; then
    fail "env file: no empty 'DB_PASSWORD=' line for the admin to fill in"
else
    ok "env file: DB_PASSWORD= is empty and no token or key has a value"
fi

problems=()
for unit in "${units[@]}"; do
    f=$tmp/root/lib/systemd/system/$unit
    [[ -f $f ]] || continue
    ! grep -q '/usr/local' "$f" || problems+=("$unit names /usr/local")
    ! grep -q '^DynamicUser=' "$f" || problems+=("$unit still uses DynamicUser=")
    if [[ $unit == *.service ]]; then
        grep -qx "User=$user" "$f" || problems+=("$unit does not run as $user")
        grep -qx 'EnvironmentFile=/etc/event-system/event-system.env' "$f" || problems+=("$unit does not read /etc/event-system/event-system.env")
        exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$f")
        [[ -x $tmp/root$exe ]] || problems+=("$unit starts $exe, which the package does not contain")
    fi
done
if ((${#problems[@]} == 0)); then
    ok "units: /usr/bin binaries, user $user, the packaged env file"
else
    fail "units: $(printf '%s; ' "${problems[@]}")"
fi

# --- 3. man pages ---------------------------------------------------------------------------
for b in "${bins[@]}"; do
    page=$tmp/root/usr/share/man/man1/$b.1.gz
    exe=$tmp/root/usr/bin/$b
    if [[ ! -f $page || ! -x $exe ]]; then
        fail "man page of $b: the page or the binary is missing from the package"
        continue
    fi
    gzip -dc "$page" >"$tmp/$b.1"
    help=$("$exe" --help) || { fail "man page of $b: $b --help failed"; continue; }
    # Every flag the help text mentions, in the options list or in its prose.
    mapfile -t flags < <(grep -oE '(^|[][ ,(])--?[A-Za-z][A-Za-z0-9-]*' <<<"$help" | sed 's/^[][ ,(]//' | sort -u)
    options=$(groff -man -Tascii -P-c -P-b -P-o -P-u -rLL=200n "$tmp/$b.1" 2>/dev/null | sed -n '/^OPTIONS$/,/^[A-Z]/p')
    missing=()
    for flag in "${flags[@]}"; do
        grep -qE -- "^ {7}(.*, )?$flag( |,|$)" <<<"$options" || missing+=("$flag")
    done
    if ((${#flags[@]} == 0)); then
        fail "man page of $b: found no flags in $b --help"
    elif ((${#missing[@]})); then
        fail "man page of $b: not in its OPTIONS section: ${missing[*]} (the page is older than the binary, or scripts/manpage.sh lost them)"
    else
        ok "man page of $b: all ${#flags[@]} flags of --help in OPTIONS (${flags[*]})"
    fi
    # As lintian runs man, and groff with every warning on.
    warnings=$(
        LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z "$tmp/$b.1" 2>&1 >/dev/null ||
            echo "man exited with status $?"
        groff -man -Tutf8 -ww -z "$tmp/$b.1" 2>&1 || echo "groff exited with status $?"
    )
    if [[ -z $warnings ]]; then
        ok "man page of $b: man --warnings and groff -ww render it without a warning"
    else
        fail "man page of $b renders with warnings: $(tr '\n' ' ' <<<"$warnings" | sed 's/ $//')"
    fi
done

# --- 4. lintian -----------------------------------------------------------------------------
# As scripts/bench.sh does with wrk: as root, a missing lintian comes from Debian's packages.
if ! command -v lintian >/dev/null && (($(id -u) == 0)) && command -v apt-get >/dev/null; then
    say "lintian is missing; installing it from Debian (apt-get install lintian)"
    if ! { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lintian >/dev/null; }; then
        die "could not install lintian with apt-get; install it by hand (apt-get install lintian)"
    fi
fi
if command -v lintian >/dev/null; then
    # Errors fail the check; warnings and informational tags are shown for a person to judge.
    if out=$(lintian --fail-on error --display-info --pedantic "$deb" 2>&1); then
        ok "lintian $(lintian --print-version): no errors"
    else
        fail "lintian: errors (below)"
    fi
    grep -v '^running with root privileges' <<<"$out" | sed 's/^/    lintian: /' || echo "    lintian: (no tags)"
else
    skip "lintian (not installed; Debian: apt-get install lintian)"
fi

# --- 5. install, verify, purge on this machine ----------------------------------------------
pid1=$(cat /proc/1/comm 2>/dev/null || echo unknown)
install_blocker() {
    [[ ${DEB_CHECK_INSTALL:-1} != 0 ]] || { echo "DEB_CHECK_INSTALL=0"; return; }
    (($(id -u) == 0)) || { echo "not root"; return; }
    if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -qv 'not-installed'; then
        echo "$package is already installed here ($(dpkg-query -W -f='${Status}' "$package")); a real installation is not touched"
        return
    fi
    getent passwd "$user" >/dev/null && { echo "a user $user already exists here, which purge would delete"; return; }
    [[ ! -e /etc/event-system ]] || { echo "/etc/event-system already exists here"; return; }
    return 0
}
blocker=$(install_blocker)
if [[ -n $blocker ]]; then
    skip "install, verify, purge ($blocker)"
else
    # What purge must leave as it was.
    leftovers() {
        local p
        for p in /etc/event-system /usr/share/doc/event-system /usr/share/event-system \
            /usr/bin/event_consumer /usr/bin/event_propagator /usr/share/lintian/overrides/event-system \
            /usr/share/man/man1/event_consumer.1.gz /usr/share/man/man1/event_propagator.1.gz; do
            [[ ! -e $p ]] || echo "$p"
        done
        find /lib/systemd/system /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled \
            /var/lib/systemd/deb-systemd-helper-masked -name 'event-*' 2>/dev/null || true
        getent passwd "$user" >/dev/null && echo "user $user"
        getent group "$user" >/dev/null && echo "group $user"
        dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -v 'not-installed' | sed "s/^/dpkg status of $package: /" || true
    }
    before=$(leftovers)
    installed_by_us=1
    if out=$(DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" 2>&1); then
        ok "dpkg -i: installed"
    else
        fail "dpkg -i failed: $(tr '\n' ' ' <<<"$out")"
    fi

    problems=()
    verify=$(dpkg --verify "$package" 2>&1) || problems+=("dpkg --verify: $verify")
    [[ -z $verify ]] || problems+=("dpkg --verify: $verify")
    perms=$(stat -c '%a %U:%G' /etc/event-system/event-system.env 2>&1)
    [[ $perms == "600 root:root" ]] || problems+=("/etc/event-system/event-system.env is $perms, not 600 root:root")
    for b in "${bins[@]}"; do
        perms=$(stat -c '%a %U:%G' "/usr/bin/$b" 2>&1)
        [[ $perms == "755 root:root" ]] || problems+=("/usr/bin/$b is $perms, not 755 root:root")
    done
    if entry=$(getent passwd "$user"); then
        IFS=: read -r _ _ uid _ _ home shell <<<"$entry"
        ((uid < 1000)) || problems+=("user $user has uid $uid, not a system uid")
        [[ $shell == */nologin || $shell == */false ]] || problems+=("user $user has the login shell $shell")
        [[ ! -e $home ]] || problems+=("user $user has an existing home $home")
    else
        problems+=("postinst made no user $user")
    fi
    man_path=$(man -w event_consumer 2>&1) && [[ $man_path == /usr/share/man/man1/event_consumer.1.gz ]] ||
        problems+=("man -w event_consumer: $man_path")
    if ((${#problems[@]} == 0)); then
        ok "installed: files verify against md5sums, env file 600 root:root, binaries 755, system user $user (uid $uid, $shell), man finds the pages"
    else
        fail "installed: $(printf '%s; ' "${problems[@]}")"
    fi

    wants=/etc/systemd/system/multi-user.target.wants
    problems=()
    for unit in event-consumer.service event-propagator.service; do
        [[ $(readlink "$wants/$unit" 2>/dev/null) == "/lib/systemd/system/$unit" ]] || problems+=("$unit is not enabled ($wants/$unit)")
    done
    [[ ! -e /etc/systemd/system/timers.target.wants/event-propagator-batch.timer ]] ||
        problems+=("event-propagator-batch.timer is enabled, though it is the alternative to event-propagator.service")
    if ((${#problems[@]} == 0)); then
        ok "units: event-consumer.service and event-propagator.service enabled, event-propagator-batch.timer not"
    else
        fail "units: $(printf '%s; ' "${problems[@]}")"
    fi
    if [[ $pid1 == systemd ]]; then
        active=$(systemctl is-active event-consumer.service event-propagator.service 2>&1 | tr '\n' ' ') || true
        if [[ $active == "inactive inactive " ]]; then ok "units: not started by the installation"; else fail "units after installation: $active"; fi
    else
        not_checked "that the installation started nothing, and later that prerm stops the services: PID 1 is $pid1, not systemd (postinst and prerm call systemctl only when /run/systemd/system exists; the scripts were checked above)"
    fi

    if command -v systemd-analyze >/dev/null; then
        unit_files=()
        for unit in "${units[@]}"; do unit_files+=("/lib/systemd/system/$unit"); done
        if out=$(systemd-analyze verify "${unit_files[@]}" 2>&1) && [[ -z $out ]]; then
            ok "systemd-analyze verify on the installed units: no findings"
        else
            fail "systemd-analyze verify on the installed units: $(tr '\n' ' ' <<<"$out")"
        fi
    else
        skip "systemd-analyze verify (not installed; it comes with systemd)"
    fi

    # The path of an upgrade: configure with the old version as $2; the units stay enabled.
    if out=$(DEBIAN_FRONTEND=noninteractive dpkg -i "$deb" 2>&1) &&
        [[ -L $wants/event-consumer.service && -L $wants/event-propagator.service ]]; then
        ok "reinstall over itself (an upgrade's postinst): succeeds, units still enabled"
    else
        fail "reinstall over itself: $(tr '\n' ' ' <<<"$out")"
    fi

    problems=()
    out=$(dpkg -r "$package" 2>&1) || problems+=("dpkg -r failed: $out")
    [[ ! -e /usr/bin/event_consumer ]] || problems+=("/usr/bin/event_consumer is still there")
    [[ -f /etc/event-system/event-system.env ]] || problems+=("the conffiles went with dpkg -r; only purge may remove them")
    if ((${#problems[@]} == 0)); then
        ok "dpkg -r: binaries gone, conffiles kept"
    else
        fail "dpkg -r: $(printf '%s; ' "${problems[@]}")"
    fi

    out=$(dpkg --purge "$package" 2>&1) || fail "dpkg --purge failed: $(tr '\n' ' ' <<<"$out")"
    installed_by_us=0
    after=$(leftovers)
    if [[ $after == "$before" ]]; then
        ok "dpkg --purge: nothing left (no /etc/event-system, /usr/share/doc/event-system, unit links or state, user or group)"
    else
        fail "dpkg --purge left behind: $(diff <(echo "$before") <(echo "$after") | sed -n 's/^> //p' | tr '\n' ' ')"
    fi
fi

echo "deb-check: $passed passed, $failed failed"
((failed == 0))
