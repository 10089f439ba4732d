# complete.zsh DIR OUT WORD... : in an interactive zsh on a pseudo-terminal
# (zpty), with the completion functions of DIR first in fpath, type the
# command line WORD... and TAB; write every candidate zsh offers to OUT, one
# per line, then END. Exits non-zero when the completion did not finish
# within 20 seconds.
zmodload zsh/zpty || exit 3
dir=$1 out=$2
shift 2
: >| $out
zpty z zsh -f -i
zpty -w z "PS1= PROMPT= RPROMPT=; fpath=(${(q)dir} \$fpath); autoload -Uz compinit; compinit -u -D"
zpty -w z "__out=${(q)out}"
# Record what every compadd call offers, then let it add as usual.
zpty -w z 'compadd() { local -a __m; builtin compadd -O __m "$@"; print -rl -- $__m >>| $__out; builtin compadd "$@"; }'
zpty -w z '__end() { print -r -- END >>| $__out }; comppostfuncs=(__end)'
zpty -w z 'bindkey "^I" complete-word'
zpty -w -n z "$*"$'\t'
integer i
for (( i = 0; i < 200; i++ )); do
  [[ -s $out && $(<$out) == *END ]] && break
  zpty -r -t z line 2>/dev/null
  sleep 0.1
done
zpty -d z
[[ $(<$out) == *END ]]
