package ca

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// maxJSONDepth bounds the nesting the CA accepts; its requests nest three levels at most.
const maxJSONDepth = 16

// checkKeys walks a JSON document and refuses what encoding/json would let through silently: a key that
// matches a field only when case is ignored ("SERIAL" for "serial"), a key given twice in one object
// (where the last would win, and a proxy or log that reads the first would disagree with the CA), and
// nesting deeper than any request needs. Unknown keys are refused too; types are left to the decoder.
//
// A byte scanner makes the check (json.Decoder.Token allocated every token of every request, base64
// payloads included); it leaves the syntax of scalars to the decoder that runs next. When it meets broken
// structure it hands the document to the token walk (walkJSON), whose error is the one reported.
func checkKeys(data []byte, t reflect.Type) error {
	sc := &keyScanner{data: data}
	err := sc.value(t, "", 0)
	if errors.Is(err, errJSONSyntax) {
		return walkJSON(json.NewDecoder(bytes.NewReader(data)), t, "", 0)
	}
	return err
}

// errJSONSyntax: the scanner met something that is not JSON structure.
var errJSONSyntax = errors.New("JSON syntax")

// keyScanner walks one JSON value in data as walkJSON does, without decoding anything but object keys.
type keyScanner struct {
	data []byte
	pos  int
}

func (s *keyScanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// next skips white space and returns the byte there, or 0 at the end.
func (s *keyScanner) next() byte {
	s.skipSpace()
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

// str reads a string at pos (the opening quote) and returns it with its quotes.
func (s *keyScanner) str() ([]byte, error) {
	start := s.pos
	for i := s.pos + 1; i < len(s.data); i++ {
		switch c := s.data[i]; {
		case c == '\\':
			i++
		case c == '"':
			s.pos = i + 1
			return s.data[start:s.pos], nil
		case c < 0x20:
			return nil, errJSONSyntax
		}
	}
	return nil, errJSONSyntax
}

// key decodes an object key exactly as encoding/json does; plain ASCII keys need no decoder.
func key(quoted []byte) (string, error) {
	plain := true
	for _, c := range quoted[1 : len(quoted)-1] {
		if c == '\\' || c >= 0x80 {
			plain = false
			break
		}
	}
	if plain {
		return string(quoted[1 : len(quoted)-1]), nil
	}
	var k string
	if err := json.Unmarshal(quoted, &k); err != nil {
		return "", errJSONSyntax
	}
	return k, nil
}

func (s *keyScanner) value(t reflect.Type, path string, depth int) error {
	if depth > maxJSONDepth {
		return errors.New("JSON nested too deeply")
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch s.next() {
	case '{':
		s.pos++
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		var seen map[string]bool
		if s.next() == '}' {
			s.pos++
			return nil
		}
		for {
			if s.next() != '"' {
				return errJSONSyntax
			}
			quoted, err := s.str()
			if err != nil {
				return err
			}
			k, err := key(quoted)
			if err != nil {
				return err
			}
			if s.next() != ':' {
				return errJSONSyntax
			}
			s.pos++
			name := path + "." + k
			if seen == nil {
				seen = map[string]bool{}
			}
			if seen[k] {
				return fmt.Errorf("field %q given twice", strings.TrimPrefix(name, "."))
			}
			seen[k] = true
			var ft reflect.Type
			if fields != nil {
				var known bool
				if ft, known = fields[k]; !known {
					return fmt.Errorf("unknown field %q (field names are case-sensitive)", strings.TrimPrefix(name, "."))
				}
			}
			if err := s.value(ft, name, depth+1); err != nil {
				return err
			}
			switch s.next() {
			case ',':
				s.pos++
			case '}':
				s.pos++
				return nil
			default:
				return errJSONSyntax
			}
		}
	case '[':
		s.pos++
		var et reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			et = t.Elem()
		}
		if s.next() == ']' {
			s.pos++
			return nil
		}
		for {
			if err := s.value(et, path+"[]", depth+1); err != nil {
				return err
			}
			switch s.next() {
			case ',':
				s.pos++
			case ']':
				s.pos++
				return nil
			default:
				return errJSONSyntax
			}
		}
	case '"':
		_, err := s.str()
		return err
	case 0, '}', ']', ',', ':':
		return errJSONSyntax
	default:
		// A number, true, false or null: its syntax is the decoder's business.
		for s.pos < len(s.data) {
			switch s.data[s.pos] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return nil
			}
			s.pos++
		}
		return nil
	}
}

func walkJSON(dec *json.Decoder, t reflect.Type, path string, depth int) error {
	if depth > maxJSONDepth {
		return errors.New("JSON nested too deeply")
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar: its type is the decoder's business
	}
	switch d {
	case '{':
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			name := path + "." + key
			if seen[key] {
				return fmt.Errorf("field %q given twice", strings.TrimPrefix(name, "."))
			}
			seen[key] = true
			var ft reflect.Type
			if fields != nil {
				var known bool
				if ft, known = fields[key]; !known {
					return fmt.Errorf("unknown field %q (field names are case-sensitive)", strings.TrimPrefix(name, "."))
				}
			}
			if err := walkJSON(dec, ft, name, depth+1); err != nil {
				return err
			}
		}
	case '[':
		var et reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			et = t.Elem()
		}
		for dec.More() {
			if err := walkJSON(dec, et, path+"[]", depth+1); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// jsonFields maps a struct's exact JSON names to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
