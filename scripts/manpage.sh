#!/usr/bin/env bash
# Writes the man page of a binary to standard output, from the same source as its --help, so the
# two cannot drift apart:
#
#   scripts/manpage.sh BINARY SECTIONS >NAME.1
#
# From `BINARY --help` (the USAGE text in the binary's source) come NAME (the first line),
# SYNOPSIS (the `Usage:` line), DESCRIPTION (the first line again, and the paragraphs after the
# options) and OPTIONS (every option line of the `Options:` block, with its continuation lines);
# `BINARY --version` gives the version in the header. SECTIONS is a hand-written roff file,
# packaging/man/<binary>.sections, with what --help does not say: it must hold ENVIRONMENT,
# FILES, EXIT STATUS and SEE ALSO, and may not repeat a generated section. The date in the
# header is SOURCE_DATE_EPOCH (scripts/deb.sh sets it from the last commit), else today, so a
# rebuild of the same commit gives the same page.
#
# The help text is read as it is laid out now: option lines start with two spaces and a dash,
# the description begins after a run of two or more spaces, and continuation lines are indented
# further than the flags. A line the parser does not understand inside the options block stops
# the run with its text, rather than being dropped from the page. scripts/deb-check.sh checks
# that every flag of --help is in the rendered page and that man renders it without warnings.
set -euo pipefail

me=$(basename "$0")
die() { printf '%s: %s\n' "$me" "$*" >&2; exit 1; }

(($# == 2)) || die "usage: $me BINARY SECTIONS >PAGE.1"
bin=$1 sections=$2
[[ -x $bin ]] || die "$bin is not an executable file"
[[ -f $sections ]] || die "the extra sections file $sections is missing"
name=$(basename "$bin")

help=$("$bin" --help) || die "$bin --help failed"
version=$("$bin" --version) || die "$bin --version failed"
version=${version##* }

# The hand-written sections: the required ones present, the generated ones absent.
for required in ENVIRONMENT FILES '"EXIT STATUS"' '"SEE ALSO"'; do
    grep -qxF ".SH $required" "$sections" || die "$sections: no '.SH $required' section"
done
for generated in NAME SYNOPSIS DESCRIPTION OPTIONS; do
    ! grep -qxF ".SH $generated" "$sections" || die "$sections: '.SH $generated' is generated from --help; remove it"
done

# Plain text to roff: backslashes and dashes escaped (\- is what a reader types into a shell),
# and a line that would start with a control character kept as text.
roff() {
    local s=${1//\\/\\e}
    s=${s//-/\\-}
    [[ $s == [.\']* ]] && s="\\&$s"
    printf '%s\n' "$s"
}

# "--config PATH" or "-h, --help": the flags bold, their arguments italic.
flag_spec() {
    local word out=()
    for word in $1; do
        if [[ $word == -* ]]; then
            local comma=
            [[ $word == *, ]] && comma=, word=${word%,}
            out+=("\\fB${word//-/\\-}\\fR$comma")
        else
            out+=("\\fI${word//-/\\-}\\fR")
        fi
    done
    printf '%s\n' "${out[*]}"
}

# The usage line's arguments: flags bold, upper-case placeholders italic, brackets plain.
synopsis_args() {
    local word out=() inner lead trail
    for word in $1; do
        lead=${word%%[!\[]*} trail=${word##*[!\]]}
        inner=${word#"$lead"} inner=${inner%"$trail"}
        if [[ $inner == -* ]]; then
            inner="\\fB${inner//-/\\-}\\fR"
        elif [[ $inner =~ ^[A-Z][A-Z_]*$ ]]; then
            inner="\\fI$inner\\fR"
        fi
        out+=("$lead$inner$trail")
    done
    printf '%s\n' "${out[*]}"
}

lead='' usage='' options=() notes=() state=lead
while IFS= read -r line; do
    case $state in
    lead)
        if [[ $line == "Usage: "* ]]; then
            usage=${line#Usage: } state=usage
        elif [[ -n $line && -z $lead ]]; then
            lead=$line
        fi
        ;;
    usage)
        [[ $line == Options: ]] && state=options
        ;;
    options)
        if [[ -z $line ]]; then
            state=notes
        elif [[ $line =~ ^\ \ (-[^ ].*[^ ])\ \ +([^ ].*)$ ]]; then
            options+=(".TP" "$(flag_spec "${BASH_REMATCH[1]}")" "$(roff "${BASH_REMATCH[2]}")")
        elif [[ $line =~ ^\ {4,}([^ ].*)$ ]] && ((${#options[@]})); then
            options+=("$(roff "${BASH_REMATCH[1]}")")
        else
            die "$bin --help: cannot read this line of the options block: '$line'"
        fi
        ;;
    notes)
        if [[ -z $line ]]; then
            notes+=(".PP")
        else
            notes+=("$(roff "$line")")
        fi
        ;;
    esac
done <<<"$help"

[[ -n $lead ]] || die "$bin --help: no description line before 'Usage:'"
[[ -n $usage ]] || die "$bin --help: no 'Usage:' line"
((${#options[@]})) || die "$bin --help: no 'Options:' block"
usage_name=${usage%% *}
[[ $usage_name == "$name" ]] || die "$bin --help: the usage line names '$usage_name', not '$name'"

# "event_consumer: receives events ..." and "Sends randomly chosen events ... rate." both
# become "receives/sends ..." after the name, without a final period.
summary=${lead#"$name: "}
summary=${summary%.}
summary="$(tr '[:upper:]' '[:lower:]' <<<"${summary:0:1}")${summary:1}"

if [[ -n ${SOURCE_DATE_EPOCH:-} ]]; then
    date=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
else
    date=$(date -u +%Y-%m-%d)
fi
upper=$(tr '[:lower:]' '[:upper:]' <<<"$name")

cat <<EOF
.\\" Generated by scripts/manpage.sh from \`$name --help\` and $(basename "$sections"); edit those, not this file.
.TH $upper 1 "$date" "event-system $version" "User Commands"
.SH NAME
$name \\- $(roff "$summary")
.SH SYNOPSIS
.B $name
$(synopsis_args "${usage#"$name"}")
.SH DESCRIPTION
.B $name
$(roff "$summary").
.PP
EOF
# The paragraphs after the options, without an empty paragraph at either end or a doubled one
# (man warns about those).
paragraphs=()
for l in "${notes[@]}"; do
    if [[ $l == .PP ]] && { ((${#paragraphs[@]} == 0)) || [[ ${paragraphs[-1]} == .PP ]]; }; then
        continue
    fi
    paragraphs+=("$l")
done
((${#paragraphs[@]})) && [[ ${paragraphs[-1]} == .PP ]] && unset 'paragraphs[-1]'
((${#paragraphs[@]})) && printf '%s\n' "${paragraphs[@]}"
printf '.SH OPTIONS\n'
printf '%s\n' "${options[@]}"
cat "$sections"
