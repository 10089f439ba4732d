package cli

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/goccy/go-yaml"
)

// configPath finds --config-file in args (before a "--"), with its value
// attached or separate, so that the file can be read before the command
// line is parsed. It returns "" when there is none.
func configPath(args []string) (string, bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return "", false
		case a == "--"+keyConfig:
			if i+1 < len(args) {
				return args[i+1], true
			}
			return "", false
		case strings.HasPrefix(a, "--"+keyConfig+"="):
			return a[len("--"+keyConfig+"="):], true
		}
	}
	return "", false
}

// configFileArgs reads a TOML (.toml) or YAML (.yaml, .yml) file whose keys
// are long option names and turns it into command-line options, so that it
// goes through exactly the same parsing and checks as the command line:
//
//	mtu = 65520
//	configure = true
//	disable-host-loopback = true
//	api-socket = "/run/user/1000/slirp.sock"
//
// A true boolean gives a flag, a false one nothing; strings and integers
// give --key=value. Options on the command line come after the file's and
// so win.
func configFileArgs(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config file: %w", err)
	}
	values := map[string]any{}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml":
		if _, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&values); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
	case ".yaml", ".yml":
		if err := yaml.Unmarshal(b, &values); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
	default:
		return nil, fmt.Errorf("config file %s: name it .toml, .yaml or .yml so its format is known", path)
	}
	return optionArgs(path, values)
}

// optionArgs turns decoded key/value pairs into options, in key order.
func optionArgs(path string, values map[string]any) ([]string, error) {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var args []string
	for _, k := range keys {
		opt, ok := longOption(k)
		if !ok || k == keyConfig {
			return nil, fmt.Errorf("config file %s: %q is not an option (use the long option names of --help, without dashes)", path, k)
		}
		v := values[k]
		if b, isBool := v.(bool); isBool {
			if opt.HasArg {
				return nil, fmt.Errorf("config file %s: %s needs a value, not %v", path, k, b)
			}
			if b {
				args = append(args, "--"+k)
			}
			continue
		}
		if !opt.HasArg {
			return nil, fmt.Errorf("config file %s: %s is a flag: set it to true or false", path, k)
		}
		s, err := scalarString(v)
		if err != nil {
			return nil, fmt.Errorf("config file %s: %s: %w", path, k, err)
		}
		args = append(args, "--"+k+"="+s)
	}
	return args, nil
}

func scalarString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case int:
		return strconv.Itoa(x), nil
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return "", fmt.Errorf("%v is not a whole number", x)
		}
		return strconv.FormatInt(int64(x), 10), nil
	}
	return "", fmt.Errorf("a %T value is not allowed: use a string, a number or a boolean", v)
}

// longOption finds a long option by its full name.
func longOption(name string) (opt struct{ HasArg bool }, ok bool) {
	for _, o := range spec.Long {
		if o.Name == name {
			opt.HasArg = o.HasArg
			return opt, true
		}
	}
	return opt, false
}
