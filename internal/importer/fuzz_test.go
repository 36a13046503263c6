package importer

import (
	"testing"
)

// FuzzParse feeds every format's parser arbitrary bytes: no panic, and an
// import either fails with a positioned error or yields results with an
// address, a state and ports the scan records.
func FuzzParse(f *testing.F) {
	for _, s := range []string{nmapOK, nmapOld, masscanJSON, masscanList, "[]", "#masscan\n", "<nmaprun scanner=\"nmap\"/>"} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(2))
		f.Add([]byte(s), uint8(3))
	}
	for _, c := range errorCases {
		f.Add([]byte(c.data), uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		format := Format("")
		if int(which)%4 > 0 {
			format = Formats[int(which)%4-1]
		}
		s, err := Parse("fuzz", data, format)
		if err != nil {
			if e, ok := err.(*Error); !ok || e.File != "fuzz" {
				t.Fatalf("Parse error %v (%T) does not name the file", err, err)
			}
			return
		}
		for i, r := range s.Results {
			if !r.Addr.IsValid() || r.State.String() == "unknown" || !s.Info.PortSet.Has(r.Proto, r.Port) {
				t.Fatalf("result %d: %+v", i, r)
			}
			if i > 0 && compareResults(s.Results[i-1], r) >= 0 {
				t.Fatalf("results %d and %d out of order or repeated", i-1, i)
			}
		}
		if s.Info.Started.IsZero() {
			t.Fatal("imported scan without a start time")
		}
	})
}
