#!/usr/bin/env bash
# `make deb`: the Debian package event-system_<version>_<arch>.deb, in target/deb/
# ($CARGO_TARGET_DIR/deb/ when that is set).
#
# Built with dpkg-deb --build --root-owner-group from a staging tree, without debhelper or
# cargo-deb: cargo-deb would be a crate to install in every CI run, and the package is small
# enough to lay out by hand. The pieces:
#   - the binaries: `cargo build --release` (glibc, dynamically linked to libc6 and libgcc-s1;
#     the static musl builds of `make dist` are for boxes without a package manager), with
#     Depends computed by dpkg-shlibdeps from what they really link;
#   - the version: [workspace.package] version in Cargo.toml, which the binaries' --version must
#     print, plus the Debian revision DEB_REVISION (default 1), which packaging/changelog's top
#     entry must name;
#   - the units: deploy/systemd/* with the paths of the package (/usr/bin) and the event-system
#     system user instead of DynamicUser=, so deploy/ stays the one source;
#   - /etc/event-system/: config.yaml and events.json as they are in the repository, and
#     event-system.env made from .env.template with an empty DB_PASSWORD (mode 0600);
#   - man pages from the binaries' --help (scripts/manpage.sh, packaging/man/*.sections);
#   - packaging/: control, conffiles, maintainer scripts, changelog, copyright (the statically
#     linked crates filled in from `cargo tree`), README.Debian, lintian overrides.
# DEB_MAINTAINER sets the Maintainer field. scripts/deb-check.sh checks the result.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$repo"

readonly package=event-system
readonly bins=(event_consumer event_propagator)
readonly maintainer=${DEB_MAINTAINER:-Event system maintainers <event-system@example.org>}
readonly revision=${DEB_REVISION:-1}
# Bookworm's systemd and lintian expect units here (trixie moves them to /usr/lib).
readonly unitdir=lib/systemd/system

for tool in dpkg-deb dpkg dpkg-shlibdeps objcopy cargo gzip; do
    command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install dpkg-dev binutils)"
done

upstream=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
[[ -n $upstream ]] || die "Cargo.toml: no version in [workspace.package]"
version=$upstream-$revision
arch=$(dpkg --print-architecture)
changelog_version=$(sed -n '1s/^[a-z0-9.+-]* (\([^)]*\)).*/\1/p' packaging/changelog)
[[ $changelog_version == "$version" ]] ||
    die "packaging/changelog: the top entry is ${changelog_version:-unreadable}, the package is $version; add an entry for $version"

target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$repo/$target_dir
out_dir=$target_dir/deb
deb=$out_dir/${package}_${version}_${arch}.deb

say "building the release binaries (cargo build --release)"
cargo build --release -p event_consumer -p event_propagator || die "cargo build --release failed (output above)"
for b in "${bins[@]}"; do
    printed=$("$target_dir/release/$b" --version) || die "$target_dir/release/$b --version failed"
    [[ $printed == "$b $upstream" ]] || die "$b --version prints '$printed', Cargo.toml says $upstream (stale build?)"
done

# The man pages' date and the files' times: the last commit, so a rebuild of it is the same.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
umask 022
install -d "$root/DEBIAN" "$root/usr/bin" "$root/etc/$package" "$root/$unitdir" \
    "$root/usr/share/man/man1" "$root/usr/share/doc/$package" "$root/usr/share/$package" \
    "$root/usr/share/lintian/overrides"

for b in "${bins[@]}"; do
    install -m 0755 "$target_dir/release/$b" "$root/usr/bin/$b"
    # Cargo's strip leaves the linker's .comment section; dh_strip would remove it too.
    objcopy --remove-section=.comment "$root/usr/bin/$b" || die "objcopy could not strip .comment from $b"
done

# Units: the package's paths and user; every substitution must apply, so a change in deploy/
# that this does not follow stops the build instead of shipping a unit pointing nowhere.
for src in deploy/systemd/*.service deploy/systemd/*.timer; do
    name=${src##*/} dest=$root/$unitdir/${src##*/}
    case $name in
    event-consumer.*) doc=event_consumer ;;
    *) doc=event_propagator ;;
    esac
    # The file's own header comment tells how to install it by hand; the package says instead.
    [[ $(head -n 1 "$src") == "#"* ]] || die "$src: expected a header comment before the first blank line"
    {
        printf '# From the %s package, made from deploy/systemd/%s: binaries in /usr/bin, run\n' "$package" "$name"
        printf '# as the event-system system user; see /usr/share/doc/%s/README.Debian.\n' "$package"
        printf '# Change it with "systemctl edit %s": an upgrade replaces this file.\n' "$name"
        sed -e '1,/^$/{/^$/!d}' \
            -e 's#/usr/local/bin/#/usr/bin/#g' \
            -e 's#, also with DynamicUser=yes##' \
            -e "s|^Description=.*|&\\nDocumentation=man:$doc(1)|" \
            -e 's|^DynamicUser=yes$|User=event-system\nGroup=event-system\n# What DynamicUser=yes would imply beyond the settings below.\nRemoveIPC=yes|' "$src"
    } >"$dest"
    chmod 0644 "$dest"
    if grep -q '/usr/local' "$dest"; then die "$dest still names /usr/local after the path substitution"; fi
    if grep -q '^DynamicUser=' "$dest"; then die "$dest still has DynamicUser= after the substitution"; fi
    grep -q '^Documentation=' "$dest" || die "deploy/systemd/$name has no Description= line to put Documentation= after"
    if [[ $name == *.service ]] && ! grep -qx 'User=event-system' "$dest"; then
        die "deploy/systemd/$name has no DynamicUser=yes line to replace with User=event-system"
    fi
done

# Configuration: conffiles, root-owned. The env file holds secrets once edited: 0600.
install -m 0644 config.yaml events.json "$root/etc/$package/"
grep -qx 'DB_PASSWORD=change-me' .env.template || die ".env.template has no 'DB_PASSWORD=change-me' line to empty for the package"
{
    cat packaging/env.head
    echo
    # .env.template without its own header (the lines before the first blank one).
    sed -e '1,/^$/d' -e 's/^DB_PASSWORD=change-me$/DB_PASSWORD=/' .env.template
} >"$tmp/event-system.env"
install -m 0600 "$tmp/event-system.env" "$root/etc/$package/event-system.env"

install -m 0755 db_init_script.sh "$root/usr/share/$package/db_init_script.sh"
install -m 0644 schema.sql "$root/usr/share/$package/schema.sql"

for b in "${bins[@]}"; do
    scripts/manpage.sh "$root/usr/bin/$b" "packaging/man/$b.sections" >"$tmp/$b.1"
    gzip -9n <"$tmp/$b.1" >"$root/usr/share/man/man1/$b.1.gz"
done

# copyright: the crates linked into the binaries (not build scripts' or proc macros' crates).
host=$(rustc -vV | sed -n 's/^host: //p')
crates=$(cargo tree -e normal,no-proc-macro --target "$host" -p event_consumer -p event_propagator \
    --prefix none --format ' {p}: {l}' | sed -e '/^$/d' -e 's/ (\*)$//' -e '/ (\//d' | sort -u) ||
    die "cargo tree failed: cannot list the linked crates for debian/copyright"
[[ -n $crates ]] || die "cargo tree listed no crates"
# tail, not head: head would close the pipe early, and pipefail would count git's SIGPIPE.
first_year=$(git log --format=%ad --date=format:%Y 2>/dev/null | tail -n 1)
last_year=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
years=${first_year:-$last_year}
[[ $years == "$last_year" ]] || years=$years-$last_year
while IFS= read -r line; do
    if [[ $line == @LINKED_CRATES@ ]]; then printf '%s\n' "$crates"; else printf '%s\n' "${line//@YEARS@/$years}"; fi
done <packaging/copyright >"$root/usr/share/doc/$package/copyright"
gzip -9n <packaging/changelog >"$root/usr/share/doc/$package/changelog.Debian.gz"
install -m 0644 packaging/README.Debian "$root/usr/share/doc/$package/README.Debian"
install -m 0644 packaging/lintian-overrides "$root/usr/share/lintian/overrides/$package"

# Depends: dpkg-shlibdeps reads debian/control from its working directory.
mkdir -p "$tmp/shlibs/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$package" "$package" >"$tmp/shlibs/debian/control"
shlibs=$(cd "$tmp/shlibs" && dpkg-shlibdeps -O "${bins[@]/#/-e$root/usr/bin/}") ||
    die "dpkg-shlibdeps could not compute the dependencies of the binaries (output above)"
shlibs=${shlibs#shlibs:Depends=}
[[ $shlibs == *libc6* ]] || die "dpkg-shlibdeps found no libc6 dependency: '$shlibs'"

# md5sums of every file but the conffiles (dpkg keeps those itself).
(cd "$root" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@INSTALLED_SIZE@|$installed_size|" -e "s|@SHLIBS_DEPENDS@|$shlibs|" \
    packaging/control.in >"$root/DEBIAN/control"
if grep -q '@[A-Z_]*@' "$root/DEBIAN/control"; then die "DEBIAN/control: a placeholder was not filled in"; fi
install -m 0644 packaging/conffiles "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 0755 "packaging/$s" "$root/DEBIAN/$s"; done
while IFS= read -r f; do
    [[ -f $root$f ]] || die "packaging/conffiles names $f, which the package does not contain"
done <packaging/conffiles

# Same times for every file, so the .deb depends only on the commit.
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
mkdir -p "$out_dir"
# One package in target/deb: an older version left there would be what make deb-check finds.
rm -f "$out_dir/${package}_"*"_$arch.deb"
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null || die "dpkg-deb --build failed (output above)"
say "built $deb ($(wc -c <"$deb") bytes): Depends: adduser, $shlibs"
