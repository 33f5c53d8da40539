package sim

import (
	"embed"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"moat/internal/config"
)

//go:embed policies/*.toml
var builtins embed.FS

// Policy is a configuration to evaluate, under a name.
type Policy struct {
	Name   string
	Config *config.Config
	// Traps: the model's trap addresses are traps of this policy, in
	// addition to its own. spamd has greytraps; postgrey and no
	// greylisting have none.
	Traps bool
}

// Builtins are the policies a run compares when none is named, in order.
var Builtins = []string{"moat", "spamd-like", "postgrey-like", "none"}

// builtinFiles maps a built-in policy to its file and whether it traps.
var builtinFiles = map[string]struct {
	file  string
	traps bool
}{
	"moat":          {"moat.toml", true},
	"spamd-like":    {"spamd.toml", true},
	"postgrey-like": {"postgrey.toml", false},
	"none":          {"none.toml", false},
}

// LoadPolicy returns a built-in policy by name, or reads a moat
// configuration file (a policy named after the file, with the model's
// traps added).
func LoadPolicy(nameOrFile string) (Policy, error) {
	if b, ok := builtinFiles[nameOrFile]; ok {
		text, err := builtins.ReadFile("policies/" + b.file)
		if err != nil {
			return Policy{}, err
		}
		cfg, err := config.Parse(text)
		if err != nil {
			return Policy{}, fmt.Errorf("built-in policy %s: %w", nameOrFile, err)
		}
		return Policy{Name: nameOrFile, Config: cfg, Traps: b.traps}, nil
	}
	if !strings.ContainsAny(nameOrFile, "/.") {
		return Policy{}, fmt.Errorf("policy %q: not a built-in one (%s) and not a file name", nameOrFile, strings.Join(Builtins, ", "))
	}
	cfg, err := config.Load(nameOrFile)
	if err != nil {
		return Policy{}, err
	}
	name := strings.TrimSuffix(filepath.Base(nameOrFile), filepath.Ext(nameOrFile))
	return Policy{Name: name, Config: cfg, Traps: true}, nil
}

// engineConfig is the policy's configuration with the model's traps.
func (p Policy) engineConfig(m *Model) *config.Config {
	c := *p.Config
	if p.Traps {
		c.Traps.Addresses = slices.Concat(c.Traps.Addresses, m.Site.Traps)
	}
	// The same name everywhere, whatever machine runs the evaluation:
	// the tarpit's replies, and so what it costs a bot, depend on it.
	c.Hostname = "mx." + m.Site.Domain
	return &c
}
