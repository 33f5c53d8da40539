package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// decode reads text into c, which holds the defaults: a key the text does
// not hold keeps its value.
//
// It reads twice. The first reading, into plain maps, checks every value
// that reads itself from text (durations, sizes, addresses, DNS list
// entries) and names its key, with the index of a list entry: go-toml
// names neither the entry of a list that fails, nor the key at all when the
// value was not written as a string. The second reading fills c, strictly:
// an unknown key or a value of the wrong TOML type is an error.
func decode(text []byte, c *Config) error {
	return Decode(text, c, "config", "docs/config.md")
}

// Decode reads TOML text into v, a pointer to a struct with toml tags, as
// moat reads its configuration: strictly, with the value types of this
// package, and with errors that start with what ("config", "model") and
// name the key; an unknown key sends the reader to page. Keys the text
// does not hold keep the values v has.
func Decode(text []byte, v any, what, page string) error {
	var doc map[string]any
	if err := toml.Unmarshal(text, &doc); err != nil {
		return decodeError(err, what, page)
	}
	if err := checkText(doc, reflect.TypeOf(v).Elem(), ""); err != nil {
		// One problem a line, each with what it is about.
		return prefixEach(what, err)
	}
	dec := toml.NewDecoder(bytes.NewReader(text))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, what, page)
	}
	return nil
}

// prefixEach puts p in front of every problem in err, one a line.
func prefixEach(p string, err error) error {
	var errs []error
	for _, e := range joined(err) {
		errs = append(errs, fmt.Errorf("%s: %w", p, e))
	}
	return errors.Join(errs...)
}

// joined flattens the errors checkText joins, tables within tables.
func joined(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, joined(e)...)
	}
	return out
}

var textType = reflect.TypeFor[encoding.TextUnmarshaler]()

// reads reports whether values of t read themselves from text.
func reads(t reflect.Type) bool { return reflect.PointerTo(t).Implements(textType) }

// tomlName is the key of a struct field in the file; "" for a field that
// is not read from it.
func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// checkText walks the table doc along the struct type t and reads every
// value whose type reads itself from text, returning every error with its
// key (errors.Join). Values of other types, and keys t does not have, are
// left to the strict second reading.
func checkText(doc map[string]any, t reflect.Type, table string) error {
	var errs []error
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := tomlName(f)
		v, ok := doc[name]
		if name == "" || !ok {
			continue
		}
		key := table + name
		ft := f.Type
		switch {
		case reads(ft):
			errs = append(errs, readText(ft, v, key))
		case ft.Kind() == reflect.Slice:
			list, ok := v.([]any)
			if !ok {
				continue
			}
			for j, e := range list {
				ekey := fmt.Sprintf("%s[%d]", key, j)
				switch sub, isTable := e.(map[string]any); {
				case reads(ft.Elem()):
					errs = append(errs, readText(ft.Elem(), e, ekey))
				case isTable && ft.Elem().Kind() == reflect.Struct:
					errs = append(errs, checkText(sub, ft.Elem(), ekey+"."))
				}
			}
		case ft.Kind() == reflect.Struct:
			if sub, ok := v.(map[string]any); ok {
				errs = append(errs, checkText(sub, ft, key+"."))
			}
		}
	}
	return errors.Join(errs...)
}

// readText reads one value v of the file into a new value of type t.
func readText(t reflect.Type, v any, key string) error {
	s, ok := v.(string)
	if !ok {
		if _, isInt := v.(int64); isInt && t.Kind() == reflect.Int64 {
			return nil // a Size in bytes: go-toml stores it itself
		}
		want := "a string is expected"
		if e, ok := reflect.Zero(t).Interface().(interface{ expects() string }); ok {
			want = e.expects()
		}
		return fmt.Errorf("%s: a TOML %s where %s", key, tomlKind(v), want)
	}
	if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("%s: %v", key, err)
	}
	return nil
}

// tomlKind names the TOML type of a value go-toml read into plain maps.
func tomlKind(v any) string {
	switch v.(type) {
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "table"
	}
	return "date or time"
}

// decodeError rewrites go-toml's errors so they name the key.
func decodeError(err error, what, page string) error {
	var sm *toml.StrictMissingError
	if errors.As(err, &sm) && len(sm.Errors) > 0 {
		var keys []string
		for _, e := range sm.Errors {
			keys = append(keys, strings.Join(e.Key(), "."))
		}
		return fmt.Errorf("%s: unknown key %s: check its spelling against %s", what, strings.Join(keys, ", "), page)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		key := strings.Join(de.Key(), ".")
		msg := de.Error()
		if m := typeErr.FindStringSubmatch(msg); m != nil {
			msg = "a TOML " + m[1] + " where " + kindOf(m[2]) + " is expected"
		}
		if key != "" {
			return fmt.Errorf("%s: %s (line %d, column %d): %s", what, key, row, col, msg)
		}
		return fmt.Errorf("%s: line %d, column %d: %s", what, row, col, de.Error())
	}
	return fmt.Errorf("%s: %w", what, err)
}

var typeErr = regexp.MustCompile(`cannot decode TOML (\w+) into .* of type (\S+)$`)

func kindOf(goType string) string {
	switch {
	case strings.Contains(goType, "[]"), strings.HasSuffix(goType, "Prefixes"):
		return "a list"
	case strings.Contains(goType, "string"):
		return "a string"
	case strings.Contains(goType, "int"), strings.Contains(goType, "Size"):
		return "an integer"
	case strings.Contains(goType, "float"):
		return "a number"
	case strings.Contains(goType, "bool"):
		return "true or false"
	}
	return "a table"
}
