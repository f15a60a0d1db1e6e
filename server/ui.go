package server

// routeUI registers the web UI.
func (s *Server) routeUI() {}
