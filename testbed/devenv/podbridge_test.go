package devenv

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/podbridge/podbridge/testbed/podbridgeproc"
)

// A test's output gets podbridge's warnings, errors and anything that is
// no log record (a data race report, a panic, the command's last error),
// never its info and debug records; lines split across writes come out
// whole, and a line without its end yet waits for it.
func TestWarningsOnly(t *testing.T) {
	var out bytes.Buffer
	w := WarningsOnly(&out)
	for _, chunk := range []string{
		`{"level":"info","ts":1,"msg":"Starting"}` + "\n",
		`{"level":"debug","msg":"x"}` + "\n" + `{"level":"warn","msg":"Sl`,
		`ow host"}` + "\n",
		`{"level":"error","msg":"Failed"}` + "\n==================\nWARNING: DATA RACE\n",
		`{"level":"Level(-2)","msg":"verbose"}` + "\n",
		"podbridge webhook: --virtual-kubeconfig is required\n",
		`{"level":"error","msg":"not yet ended"`,
	} {
		if n, err := w.Write([]byte(chunk)); err != nil || n != len(chunk) {
			t.Fatalf("Write(%q) = %d, %v", chunk, n, err)
		}
	}
	want := strings.Join([]string{
		`{"level":"warn","msg":"Slow host"}`,
		`{"level":"error","msg":"Failed"}`,
		"==================",
		"WARNING: DATA RACE",
		"podbridge webhook: --virtual-kubeconfig is required",
	}, "\n") + "\n"
	if out.String() != want {
		t.Errorf("passed:\n%s\nwant:\n%s", out.String(), want)
	}
}

// A podbridge process that exits with the race detector's status makes
// Stop report ErrDataRace, which fails the test run; another failing exit
// is reported as it is, and status 0 not at all.
func TestExitErrorNamesADataRace(t *testing.T) {
	exit := func(code string) error {
		return exec.Command("sh", "-c", "exit "+code).Run()
	}
	proc, err := podbridgeproc.Cluster{Binary: "/bin/podbridge", LogDir: t.TempDir()}.Reflector("reflector")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		code     string
		race, ok bool
	}{{"66", true, false}, {"1", false, false}, {"0", false, true}} {
		c := &component{name: "reflector", proc: proc, exit: exit(tt.code)}
		err := c.exitError()
		if (err == nil) != tt.ok || errors.Is(err, ErrDataRace) != tt.race {
			t.Errorf("exit %s: %v", tt.code, err)
		}
	}
}
