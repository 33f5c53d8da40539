package config

import "reflect"

// Diff returns the keys whose values differ between a and b, in the order
// of the file layout. A list is one key, whatever changed in it.
func Diff(a, b *Config) []string {
	return diff(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", nil)
}

func diff(a, b reflect.Value, table string, out []string) []string {
	t := a.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := tomlName(f)
		if name == "" {
			continue
		}
		key := table + name
		if f.Type.Kind() == reflect.Struct && !reads(f.Type) {
			out = diff(a.Field(i), b.Field(i), key+".", out)
			continue
		}
		if !reflect.DeepEqual(a.Field(i).Interface(), b.Field(i).Interface()) {
			out = append(out, key)
		}
	}
	return out
}
