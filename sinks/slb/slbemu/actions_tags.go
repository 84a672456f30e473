package slbemu

import (
	"net/http"
	"slices"
)

// Tags exist only on load balancer instances (ResourceType "instance").

func (s *Server) tagTargetsLocked(c *apiCall, needIDs bool) ([]*lbState, *apiError) {
	switch rt := c.p.Get("ResourceType"); rt {
	case "":
		return nil, missingParam("ResourceType")
	case "instance":
	default:
		return nil, invalidParam("ResourceType", "the emulator tags only load balancers (instance)")
	}
	ids := repeated(c.p, "ResourceId")
	if len(ids) == 0 && needIDs {
		return nil, missingParam("ResourceId.1")
	}
	if len(ids) > 20 {
		return nil, invalidParam("ResourceId", "at most 20 resources")
	}
	var out []*lbState
	for _, id := range ids {
		lb := s.lbs[id]
		if lb == nil || lb.cfg.Region != c.region {
			return nil, errf(http.StatusNotFound, "InvalidResourceId.NotFound", "The specified resource %s does not exist.", id)
		}
		out = append(out, lb)
	}
	return out, nil
}

func (s *Server) tagResources(c *apiCall) (map[string]any, *apiError) {
	lbs, aerr := s.tagTargetsLocked(c, true)
	if aerr != nil {
		return nil, aerr
	}
	tags, aerr := tagParams(c.p)
	if aerr != nil {
		return nil, aerr
	}
	if len(tags) == 0 {
		return nil, missingParam("Tag.1.Key")
	}
	for _, lb := range lbs {
		n := len(lb.cfg.Tags)
		for _, t := range tags {
			if _, ok := lb.cfg.Tags[t.Key]; !ok {
				n++
			}
		}
		if n > 20 {
			return nil, errf(http.StatusBadRequest, "QuotaExceeded.TagNum", "The number of tags on %s would exceed 20.", lb.cfg.ID)
		}
	}
	for _, lb := range lbs {
		for _, t := range tags {
			lb.cfg.Tags[t.Key] = t.Value
		}
	}
	return nil, nil
}

func (s *Server) untagResources(c *apiCall) (map[string]any, *apiError) {
	lbs, aerr := s.tagTargetsLocked(c, true)
	if aerr != nil {
		return nil, aerr
	}
	keys := repeated(c.p, "TagKey")
	all := c.p.Get("All") == "true"
	if len(keys) == 0 && !all {
		return nil, missingParam("TagKey.1")
	}
	for _, lb := range lbs {
		for k := range lb.cfg.Tags {
			if all || slices.Contains(keys, k) {
				delete(lb.cfg.Tags, k)
			}
		}
	}
	return nil, nil
}

func (s *Server) listTagResources(c *apiCall) (map[string]any, *apiError) {
	lbs, aerr := s.tagTargetsLocked(c, false)
	if aerr != nil {
		return nil, aerr
	}
	want, aerr := tagParams(c.p)
	if aerr != nil {
		return nil, aerr
	}
	if len(lbs) == 0 && len(want) == 0 {
		return nil, missingParam("ResourceId.1")
	}
	if len(lbs) == 0 {
		for _, lb := range s.sortedLBsLocked() {
			if lb.cfg.Region == c.region && hasAllTags(lbTags(lb), want) {
				lbs = append(lbs, lb)
			}
		}
	}
	list := []map[string]any{}
	for _, lb := range lbs {
		for _, t := range lbTags(lb) {
			list = append(list, map[string]any{"ResourceId": lb.cfg.ID, "ResourceType": "instance",
				"TagKey": t.Key, "TagValue": t.Value})
		}
	}
	return map[string]any{"NextToken": "", "TagResources": map[string]any{"TagResource": list}}, nil
}
