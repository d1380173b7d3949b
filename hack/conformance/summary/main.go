// Command summary reads the JUnit report of a conformance run (ginkgo's
// --junit-report) and writes the short summary a person reads: how many
// specs were selected, passed, failed and skipped, per SIG, and each
// failure with its first error line and a cause class from a list kept in
// the repository (hack/conformance/causes.txt). `make conformance` runs it.
//
// Usage: summary -junit junit.xml -causes causes.txt [-wall 8m] [-out summary.txt]
package main

import (
	"bufio"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"regexp"
	"sort"
	"strings"
)

func main() {
	junit := flag.String("junit", "", "ginkgo's JUnit report")
	causes := flag.String("causes", "", "the cause list: a regexp, \" # \", a cause class, a line each")
	wall := flag.String("wall", "", "the run's wall time, as said")
	out := flag.String("out", "", "where to write the summary (default: standard output)")
	flag.Parse()
	if *junit == "" || *causes == "" {
		log.Fatal("usage: summary -junit FILE -causes FILE [-wall DURATION] [-out FILE]")
	}
	specs, err := readJUnit(*junit)
	if err != nil {
		log.Fatal(err)
	}
	rules, err := readCauses(*causes)
	if err != nil {
		log.Fatal(err)
	}
	s := summarize(specs, rules)
	if *out == "" {
		err = write(os.Stdout, s, *wall)
	} else {
		var f *os.File
		if f, err = os.Create(*out); err == nil {
			err = errors.Join(write(f, s, *wall), f.Close())
		}
	}
	if err != nil {
		log.Fatal(err)
	}
}

// junitTestCase is the part of ginkgo's JUnit test case the summary reads.
type junitTestCase struct {
	Name    string `xml:"name,attr"`
	Status  string `xml:"status,attr"`
	Time    string `xml:"time,attr"`
	Failure *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
	Error *struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"error"`
	Skipped *struct {
		Message string `xml:"message,attr"`
	} `xml:"skipped"`
}

type junitReport struct {
	Suites []struct {
		Cases []junitTestCase `xml:"testcase"`
	} `xml:"testsuite"`
}

// spec is one spec of the report that ran, or was skipped while running.
type spec struct {
	Name, SIG, Status string
	// Message is the failure's (or the skip's) message; Detail the
	// failure's message and text, which its cause is read from.
	Message, Detail string
}

// readJUnit returns the report's specs that were selected: those ginkgo
// ran or that skipped themselves. Specs the focus left out (skipped with
// no message of their own) and the suite's setup nodes are not specs of
// the run.
func readJUnit(file string) ([]spec, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var r junitReport
	if err := xml.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	var specs []spec
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			name, isIt := strings.CutPrefix(c.Name, "[It] ")
			if !isIt {
				// A setup node ([SynchronizedBeforeSuite], ...) counts only
				// when it failed: then no spec could run.
				if c.Failure == nil && c.Error == nil {
					continue
				}
			}
			name = labelList.ReplaceAllString(name, "")
			sp := spec{Name: name, SIG: sigOf(name), Status: c.Status}
			switch {
			case c.Failure != nil:
				sp.Message = firstNonEmpty(c.Failure.Message, c.Failure.Text)
				sp.Detail = c.Failure.Message + "\n" + c.Failure.Text
			case c.Error != nil:
				sp.Message = firstNonEmpty(c.Error.Message, c.Error.Text)
				sp.Detail = c.Error.Message + "\n" + c.Error.Text
			case c.Skipped != nil:
				sp.Message = c.Skipped.Message
			}
			if sp.Status == "skipped" && filteredOut(sp.Message) {
				continue
			}
			specs = append(specs, sp)
		}
	}
	return specs, nil
}

// filteredOut reports whether a skip message is ginkgo's for a spec its
// focus or skip left out, rather than the spec's own skip.
func filteredOut(message string) bool {
	m := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(message), "skipped"))
	return m == "" || m == "-"
}

var sigPattern = regexp.MustCompile(`\[(sig-[a-z-]+)\]`)

// labelList is the list of a spec's labels ginkgo appends to its name in
// the JUnit report ("[sig-node, NodeConformance, Conformance]"): the
// spec's text already names them.
var labelList = regexp.MustCompile(` \[[^\]]*, [^\]]*\]$`)

func sigOf(name string) string {
	if m := sigPattern.FindStringSubmatch(name); m != nil {
		return m[1]
	}
	return "(no SIG)"
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}

// rule classes failures whose message matches re.
type rule struct {
	re    *regexp.Regexp
	class string
}

func readCauses(file string) ([]rule, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rules []rule
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pattern, class, ok := strings.Cut(line, " # ")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want REGEXP # CAUSE CLASS", file, n)
		}
		re, err := regexp.Compile(strings.TrimSpace(pattern))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		rules = append(rules, rule{re, strings.TrimSpace(class)})
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	if len(rules) == 0 {
		return nil, errors.New(file + ": no causes")
	}
	return rules, nil
}

// unclassified is the class of a failure no rule matched.
const unclassified = "unclassified: read the failure in e2e.log"

func classify(message string, rules []rule) string {
	for _, r := range rules {
		if r.re.MatchString(message) {
			return r.class
		}
	}
	return unclassified
}

// counts are a group's specs by outcome.
type counts struct{ Selected, Passed, Failed, Skipped int }

func (c *counts) add(status string) {
	c.Selected++
	switch status {
	case "passed":
		c.Passed++
	case "skipped", "pending":
		c.Skipped++
	default: // failed, panicked, interrupted, timedout, aborted
		c.Failed++
	}
}

type failure struct {
	Name, FirstLine, Cause string
}

type summary struct {
	Total   counts
	BySIG   map[string]*counts
	Fails   []failure
	Skipped []spec
}

func summarize(specs []spec, rules []rule) summary {
	s := summary{BySIG: map[string]*counts{}}
	for _, sp := range specs {
		s.Total.add(sp.Status)
		c := s.BySIG[sp.SIG]
		if c == nil {
			c = &counts{}
			s.BySIG[sp.SIG] = c
		}
		c.add(sp.Status)
		switch sp.Status {
		case "passed":
		case "skipped", "pending":
			s.Skipped = append(s.Skipped, sp)
		default:
			s.Fails = append(s.Fails, failure{Name: sp.Name, FirstLine: firstLine(sp.Message), Cause: classify(sp.Detail, rules)})
		}
	}
	sort.Slice(s.Fails, func(i, j int) bool { return s.Fails[i].Name < s.Fails[j].Name })
	return s
}

// firstLine is the message's first line that says something, cut to a
// readable length.
func firstLine(message string) string {
	for line := range strings.SplitSeq(message, "\n") {
		if line = strings.TrimSpace(line); line != "" && line != "[FAILED]" {
			line = strings.TrimPrefix(line, "[FAILED] ")
			if len(line) > 300 {
				line = line[:300] + "…"
			}
			return line
		}
	}
	return "(no message)"
}

// write writes the summary to w.
func write(w io.Writer, s summary, wall string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Conformance run: %d selected, %d passed, %d failed, %d skipped", s.Total.Selected, s.Total.Passed, s.Total.Failed, s.Total.Skipped)
	if wall != "" {
		fmt.Fprintf(&b, "; wall time %s", wall)
	}
	b.WriteString("\n")
	sigs := make([]string, 0, len(s.BySIG))
	for sig := range s.BySIG {
		sigs = append(sigs, sig)
	}
	sort.Strings(sigs)
	fmt.Fprintf(&b, "\n%-22s %8s %7s %7s %8s\n", "SIG", "selected", "passed", "failed", "skipped")
	for _, sig := range sigs {
		c := s.BySIG[sig]
		fmt.Fprintf(&b, "%-22s %8d %7d %7d %8d\n", sig, c.Selected, c.Passed, c.Failed, c.Skipped)
	}
	if len(s.Fails) > 0 {
		byCause := map[string]int{}
		for _, f := range s.Fails {
			byCause[f.Cause]++
		}
		causes := make([]string, 0, len(byCause))
		for c := range byCause {
			causes = append(causes, c)
		}
		sort.Strings(causes)
		fmt.Fprintf(&b, "\nFailures by cause:\n")
		for _, c := range causes {
			fmt.Fprintf(&b, "  %3d  %s\n", byCause[c], c)
		}
		fmt.Fprintf(&b, "\nFailures:\n")
		for _, f := range s.Fails {
			fmt.Fprintf(&b, "- %s\n    first error: %s\n    cause: %s\n", f.Name, f.FirstLine, f.Cause)
		}
	}
	if len(s.Skipped) > 0 {
		fmt.Fprintf(&b, "\nSkipped while running:\n")
		for _, sp := range s.Skipped {
			fmt.Fprintf(&b, "- %s\n    %s\n", sp.Name, firstLine(sp.Message))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
