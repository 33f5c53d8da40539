package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// ownPage names the tables documented on a page of their own rather than
// in docs/config.md.
var ownPage = map[string]string{
	"reputation": "../../docs/reputation.md",
}

// readDoc returns a documentation page, failing the test if it is missing.
func readDoc(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("documentation page missing: %v", err)
	}
	return string(b)
}

// tomlKeys lists the dotted keys of the file layout, from its toml tags.
// A table is a struct; a value that reads itself from text (a duration, a
// prefix) is a key even when its Go type is a struct.
func tomlKeys(t *testing.T, typ reflect.Type, table string) []string {
	var keys []string
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name := tomlName(f)
		if name == "" {
			t.Errorf("field %s.%s has no toml tag: every field is a key of the file", typ.Name(), f.Name)
			continue
		}
		key := table + name
		if f.Type.Kind() == reflect.Struct && !reads(f.Type) {
			keys = append(keys, tomlKeys(t, f.Type, key+".")...)
			continue
		}
		keys = append(keys, key)
	}
	return keys
}

// TestDocNamesEveryKey checks that the documentation names every key the
// parser knows, so a new key cannot ship undocumented.
func TestDocNamesEveryKey(t *testing.T) {
	pages := map[string]string{}
	keys := tomlKeys(t, reflect.TypeFor[Config](), "")
	if len(keys) < 40 {
		t.Fatalf("found only %d keys: the walk over the file layout is broken", len(keys))
	}
	for _, k := range keys {
		path := "../../docs/config.md"
		name := k
		if table, rest, ok := strings.Cut(k, "."); ok && ownPage[table] != "" {
			path, name = ownPage[table], rest
		}
		doc, ok := pages[path]
		if !ok {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("documentation page missing for `%s`: %v", k, err)
			}
			doc = string(b)
			pages[path] = doc
		}
		if doc == "" {
			continue
		}
		if !strings.Contains(doc, "`"+k+"`") && !strings.Contains(doc, "`"+name+"`") {
			t.Errorf("%s has no entry for `%s`", strings.TrimPrefix(path, "../../"), k)
		}
	}
}

// emptyToNil sets every empty slice reachable from v to nil, so a list
// written as [] compares equal to a default that is nil.
func emptyToNil(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			emptyToNil(v.Elem())
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Field(i).CanSet() {
				emptyToNil(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 && !v.IsNil() {
			v.Set(reflect.Zero(v.Type()))
		}
	}
}

// TestDocExample checks that the example in docs/config.md loads and holds
// the defaults, apart from the values its comments say differ.
func TestDocExample(t *testing.T) {
	doc := readDoc(t, "../../docs/config.md")
	start := strings.Index(doc, "```toml\n")
	if start < 0 {
		t.Fatal("no TOML example in docs/config.md")
	}
	text := doc[start+len("```toml\n"):]
	text = text[:strings.Index(text, "```")]
	c, err := Parse([]byte(text))
	if err != nil {
		t.Fatalf("the documented example does not load: %v", err)
	}
	want := Default()
	want.Hostname = "mx.example.org"
	want.Store = "bolt"
	emptyToNil(reflect.ValueOf(c))
	if !reflect.DeepEqual(c, want) {
		gv, wv := reflect.ValueOf(*c), reflect.ValueOf(*want)
		for i := 0; i < gv.NumField(); i++ {
			if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
				t.Errorf("example %s = %+v, default %+v", gv.Type().Field(i).Name, gv.Field(i).Interface(), wv.Field(i).Interface())
			}
		}
	}
}

// tomlBlocks returns the TOML examples of a documentation page.
func tomlBlocks(t *testing.T, doc string) []string {
	t.Helper()
	var blocks []string
	for rest := doc; ; {
		start := strings.Index(rest, "```toml\n")
		if start < 0 {
			return blocks
		}
		rest = rest[start+len("```toml\n"):]
		end := strings.Index(rest, "```")
		if end < 0 {
			t.Fatal("an unterminated TOML example")
		}
		blocks = append(blocks, strings.TrimSpace(strings.ReplaceAll(rest[:end], "\n  ", "\n")))
		rest = rest[end:]
	}
}

// Every TOML example in the set-up guides loads, and so does the
// configuration the Debian package installs: an operator copies them.
func TestGuidesAndPackagedConfigLoad(t *testing.T) {
	for _, page := range []string{"../../docs/postfix.md", "../../docs/operations.md", "../../README.md"} {
		blocks := tomlBlocks(t, readDoc(t, page))
		if page == "../../docs/postfix.md" && len(blocks) < 3 {
			t.Errorf("%s: %d TOML examples, want the set-ups'", page, len(blocks))
		}
		for i, b := range blocks {
			if _, err := Parse([]byte(b)); err != nil {
				t.Errorf("%s, TOML example %d does not load: %v\n%s", page, i+1, err, b)
			}
		}
	}
	c, err := Load("../../packaging/moat.toml")
	if err != nil {
		t.Fatalf("the packaged configuration does not load: %v", err)
	}
	if c.DataDir != "/var/lib/moat" || c.User != "moat" || c.Backend == Default().Backend {
		t.Errorf("packaged configuration: data_dir %q, user %q, backend %q; want /var/lib/moat, moat and a port other than amavis's 10025", c.DataDir, c.User, c.Backend)
	}
}
