package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromium is Debian's Chromium (apt-get install -y chromium).
const chromium = "/usr/bin/chromium"

// TestReport_Browser writes the report of run5 and opens it in a real
// headless Chromium: it must load with no network request and no console
// error, show the top incident (the rogue ci:deployer) and draw its chart,
// and print to PDF.
func TestReport_Browser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("no Chromium at %s (apt-get install -y chromium): the report is not checked in a browser", chromium)
	}
	path := filepath.Join(t.TempDir(), "report.html")
	code, _, errs := vigil(t, "", "replay", "-q", "-o", os.DevNull, "--report", path,
		"--audit-policy", "../../testdata/real-apiserver/audit-policy.yaml", run5Log)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	url := "file://" + path

	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	ctx, cancel = chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
	)
	defer cancel()
	ctx, cancel = chromedp.NewContext(ctx)
	defer cancel()

	var (
		mu       sync.Mutex
		requests []string
		problems []string
	)
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			requests = append(requests, e.Request.URL)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				problems = append(problems, "console "+string(e.Type))
			}
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError || e.Entry.Level == log.EntryLevelWarning {
				problems = append(problems, string(e.Entry.Level)+": "+e.Entry.Text)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, log.Enable, struct{}{}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible("#incident-1")); err != nil {
		t.Fatal(err)
	}
	top, err := chromedp.Run(ctx, chromedp.Text("#incident-1 .summary"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(top, "system:serviceaccount:ci:deployer") {
		t.Errorf("the top incident does not name ci:deployer: %q", top)
	}
	type box struct {
		Width, Height float64
		Bars          int
		Visible       bool
	}
	chart, err := chromedp.Run(ctx, chromedp.Evaluate[box](`(() => {
		const svg = document.querySelector('#incident-1 svg.chart');
		const r = svg.getBoundingClientRect();
		const bars = [...svg.querySelectorAll('rect')].filter(b => b.getBBox().height > 0);
		return {Width: r.width, Height: r.height, Bars: bars.length, Visible: getComputedStyle(svg).visibility === 'visible'};
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if chart.Width < 300 || chart.Height < 40 || chart.Bars < 5 || !chart.Visible {
		t.Errorf("the top incident's chart does not render: %+v", chart)
	}
	pdf, err := chromedp.Run(ctx, chromedp.PrintToPDF(chromedp.PDFPrintBackground()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF")) || len(pdf) < 20_000 {
		t.Errorf("print to PDF gave %d bytes", len(pdf))
	}

	mu.Lock()
	defer mu.Unlock()
	for _, r := range requests {
		if r != url {
			t.Errorf("the report loaded %s", r)
		}
	}
	if len(requests) != 1 {
		t.Errorf("requests %v, want the report alone", requests)
	}
	for _, p := range problems {
		t.Errorf("browser reported %s", p)
	}
}
