package tests

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// localSummary is the summary.json a local build (`buildd-agent build …`)
// writes into its --output directory.
type localSummary struct {
	Status    string `json:"status"`
	Revision  string `json:"revision"`
	Artifacts []struct {
		Name, SHA1, SHA256, SHA512 string
		Size                       int64
	} `json:"artifacts"`
	Extra struct {
		Jobs map[string]map[string]any `json:"jobs"`
	} `json:"extra"`
	raw []byte
}

// readLocalSummary reads out/summary.json and checks each artifact it
// lists against the file in out: size, SHA-1, SHA-256 and SHA-512.
func readLocalSummary(t *testing.T, out string) *localSummary {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := &localSummary{raw: data}
	if err := json.Unmarshal(data, s); err != nil {
		t.Fatalf("summary.json: %v\n%s", err, data)
	}
	for _, a := range s.Artifacts {
		b, err := os.ReadFile(filepath.Join(out, a.Name))
		if err != nil {
			t.Errorf("%s: %v", a.Name, err)
			continue
		}
		s256, s512 := sha256.Sum256(b), sha512.Sum512(b)
		if hex.EncodeToString(s256[:]) != a.SHA256 || hex.EncodeToString(s512[:]) != a.SHA512 || snapSHA1Hex(b) != a.SHA1 || int64(len(b)) != a.Size {
			t.Errorf("%s: hashes or size in summary.json do not match the file", a.Name)
		}
	}
	return s
}

// names are the artifacts' names, sorted.
func (s *localSummary) names() []string {
	var n []string
	for _, a := range s.Artifacts {
		n = append(n, a.Name)
	}
	sort.Strings(n)
	return n
}
