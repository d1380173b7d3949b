//go:build !race

package devenv

// raceDetector says this binary was built with -race.
const raceDetector = false
