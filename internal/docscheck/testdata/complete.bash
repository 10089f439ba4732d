# complete.bash FILE WORD... : load the bash completion script FILE and ask
# it to complete the command line WORD... (the last word is the one being
# completed; "=" is a word of its own, as COMP_WORDBREAKS makes it), then
# print the candidates, one per line.
file=$1
shift
source "$file" || exit 3
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
spec=$(complete -p "$1") || exit 4
fn=${spec#*-F }
fn=${fn%% *}
"$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
