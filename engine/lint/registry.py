"""The explicit list of lint rules, in ID order. A new rule is added here by hand."""
from __future__ import annotations

from types import ModuleType
from typing import Dict, Tuple

from .rules import (business_hours, dead_end_stage, decay_too_fast, duplicate_step_id, enum_mismatch, escalation,
                    handoff_unknown_stage, magnet_consent, marketing_to_open_deal, missing_postal_address,
                    missing_unsubscribe, no_way_in, programs_over_cap,
                    rep_list, segment_gap, segment_overlap, send_in_quiet_hours, sequence_over_cap,
                    sequence_without_exit, sla_through_the_night, step_after_exit, subject_newline, template_parts,
                    template_render, template_syntax, template_undefined, territory_routes, threshold_order,
                    transition_cycle, transition_from_terminal, unknown_crm_event, unknown_lead_magnet,
                    unknown_name, unknown_persona, unknown_segment, unknown_sequence, unknown_stage,
                    unknown_template, unknown_variant, unreachable_stage, unreachable_threshold, unused_persona,
                    unused_segment, unused_sequence, unused_template, unused_threshold, variant_unused,
                    variant_weights)

RULES: Tuple[ModuleType, ...] = tuple(sorted((
    unknown_template, unknown_segment, unknown_persona, unknown_stage, unknown_lead_magnet, unknown_sequence,
    unknown_crm_event, unknown_name, unused_template, unused_segment, unused_sequence, unused_persona,
    enum_mismatch, template_syntax, template_undefined, template_parts, subject_newline, template_render,
    unknown_variant, variant_unused,
    unreachable_stage, dead_end_stage, transition_cycle, segment_overlap, segment_gap, sequence_without_exit,
    step_after_exit, transition_from_terminal, variant_weights, duplicate_step_id,
    sequence_over_cap, programs_over_cap, magnet_consent, marketing_to_open_deal, send_in_quiet_hours,
    missing_unsubscribe, missing_postal_address,
    unreachable_threshold, threshold_order, handoff_unknown_stage, rep_list, sla_through_the_night, unused_threshold,
    territory_routes, no_way_in, business_hours, decay_too_fast, escalation,
), key=lambda m: m.ID))

BY_ID: Dict[str, ModuleType] = {r.ID: r for r in RULES}
assert len(BY_ID) == len(RULES), "two rules share an ID"
