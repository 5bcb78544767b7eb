package ui

import (
	"errors"
	"fmt"
	"mime"
	"net/http"

	"github.com/labstack/echo/v4"
)

// Request bodies the dashboard accepts: forms and API calls carry a few fields, a submitted job
// message up to 1 MiB (the jobs topic's own limit is far lower; this only bounds memory).
const (
	maxBody    = 64 << 10
	maxJobBody = 1 << 20
)

// limitBody bounds every request body by its route's limit. A body announced larger is refused
// before a byte of it is read; one that grows past the limit as it arrives is cut off there. Forms
// are parsed here, under the limit, because FormValue (used by the CSRF check and the handlers)
// drops a read error and would see an empty form instead of refusing it.
func limitBody(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		limit := int64(maxBody)
		if r.Method == http.MethodPost && c.Path() == "/api/v1/jobs" {
			limit = maxJobBody
		}
		if r.ContentLength > limit {
			return tooLarge(limit)
		}
		// The server's own writer, so that a body cut off also closes the connection.
		r.Body = http.MaxBytesReader(c.Response().Writer, r.Body, limit)
		if err := parseForm(r, limit); err != nil {
			if isTooLarge(err) {
				return tooLarge(limit)
			}
			return echo.NewHTTPError(http.StatusBadRequest, "malformed form")
		}
		return next(c)
	}
}

func parseForm(r *http.Request, limit int64) error {
	ct, _, _ := mime.ParseMediaType(r.Header.Get(echo.HeaderContentType))
	switch ct {
	case echo.MIMEApplicationForm:
		return r.ParseForm()
	case echo.MIMEMultipartForm:
		return r.ParseMultipartForm(limit)
	}
	return nil
}

func isTooLarge(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

func tooLarge(limit int64) error {
	return echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body over %d KiB", limit>>10))
}
