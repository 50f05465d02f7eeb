package ca

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tpmline/tpmline/provisioning"
)

// tokenWalk is the key check done the slow way, on json.Decoder tokens: the reference checkKeys must match.
func tokenWalk(data []byte, t reflect.Type) error {
	return walkJSON(json.NewDecoder(bytes.NewReader(data)), t, "", 0)
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzCheckKeysMatchesTokenWalk is the differential fuzz test of the key scanner: on valid JSON it gives the
// token walk's verdict and message; on anything else both refuse (the decoder refuses what the scanner
// leaves to it), and decodeJSON still answers with a protocol error.
func FuzzCheckKeysMatchesTokenWalk(f *testing.F) {
	enroll, _ := json.Marshal(&provisioning.EnrollRequest{Version: 1, Serial: "SN-1", Product: "p", EKCert: []byte{1}, EKChain: [][]byte{{2}}, TPM: provisioning.TPMInfo{Manufacturer: "IFX"}})
	activate, _ := json.Marshal(&provisioning.ActivateRequest{Version: 1, SessionID: "00ff", Secret: []byte{1}})
	upload, _ := json.Marshal(&EKListUpload{Batch: "B", Entries: []EKListEntry{{Serial: "SN-1"}}})
	for _, seed := range []string{string(enroll), string(activate), string(upload),
		`{"serial":"a","serial":"b"}`, `{"SERIAL":"a"}`, `{"tpm":{"model":"x","model":"y"}}`, `{"\u0073erial":"a","serial":"b"}`,
		`{"ek_chain":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}`, `{"a":tru,"a":1}`, `{"serial":"a\"b"}`, `[{"x":1}]`, `{"serial":"\xff"}`,
		`{"ser\xffial":1}`, ` {"version" : 1 , "tpm" : { } } `, `{`, `{"a"`, `{"a":}`, `{,}`, `[1,]`, `"x`, `1 2`} {
		f.Add([]byte(seed), uint8(0))
		f.Add([]byte(seed), uint8(1))
		f.Add([]byte(seed), uint8(2))
	}
	types := []reflect.Type{reflect.TypeOf(provisioning.EnrollRequest{}), reflect.TypeOf(provisioning.ActivateRequest{}), reflect.TypeOf(EKListUpload{})}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		typ := types[int(which)%len(types)]
		got, want := checkKeys(data, typ), tokenWalk(data, typ)
		var first json.RawMessage
		valid := json.NewDecoder(bytes.NewReader(data)).Decode(&first) == nil
		// Token turns numbers into float64 and fails on one out of range; the scanner leaves numbers to the
		// decoder, which refuses them for every field of these requests.
		var numErr *json.UnmarshalTypeError
		tokenNumber := errors.As(want, &numErr) && strings.HasPrefix(numErr.Value, "number")
		if valid && errText(got) != errText(want) && !(got == nil && tokenNumber) {
			t.Fatalf("%q as %v: scanner %v, token walk %v", data, typ, got, want)
		}
		if !valid && got == nil && want == nil {
			return // both leave it to the decoder, which refuses it
		}
		if got == nil && want != nil {
			// The scanner left the syntax to the decoder: decodeJSON must still refuse.
			v := reflect.New(typ).Interface()
			if err := decodeJSON(bytes.NewReader(data), v); err == nil {
				t.Fatalf("%q as %v: accepted", data, typ)
			} else if _, ok := err.(*provisioning.Error); !ok {
				t.Fatalf("%q: error of type %T", data, err)
			}
		}
	})
}
