"""The 32 offence categories of Framework Decision 2002/584/JHA art. 2(2), repeated in
Regulation (EU) 2018/1805 art. 3(1) and Directive 2014/41/EU Annex D.

For these offences, when punishable in the issuing state by a maximum of at least three
years, the executing state does not verify double criminality. Requests name one or more
categories and describe the offence in free text as well.
"""

from __future__ import annotations

from enum import StrEnum


class OffenceCategory(StrEnum):
    """One of the 32 listed offences (FD 2002/584 art. 2(2); Reg. 2018/1805 art. 3(1))."""

    CRIMINAL_ORGANISATION = "participation-in-a-criminal-organisation"
    TERRORISM = "terrorism"
    TRAFFICKING_IN_HUMAN_BEINGS = "trafficking-in-human-beings"
    CHILD_SEXUAL_EXPLOITATION = "sexual-exploitation-of-children-and-child-pornography"
    DRUG_TRAFFICKING = "illicit-trafficking-in-narcotic-drugs-and-psychotropic-substances"
    WEAPONS_TRAFFICKING = "illicit-trafficking-in-weapons-munitions-and-explosives"
    CORRUPTION = "corruption"
    FRAUD = "fraud-including-against-the-financial-interests-of-the-union"
    MONEY_LAUNDERING = "laundering-of-the-proceeds-of-crime"
    CURRENCY_COUNTERFEITING = "counterfeiting-currency-including-the-euro"
    COMPUTER_CRIME = "computer-related-crime"
    ENVIRONMENTAL_CRIME = "environmental-crime"
    FACILITATION_OF_ILLEGAL_ENTRY = "facilitation-of-unauthorised-entry-and-residence"
    MURDER_GRIEVOUS_BODILY_INJURY = "murder-grievous-bodily-injury"
    ORGAN_TRAFFICKING = "illicit-trade-in-human-organs-and-tissue"
    KIDNAPPING = "kidnapping-illegal-restraint-and-hostage-taking"
    RACISM_AND_XENOPHOBIA = "racism-and-xenophobia"
    ORGANISED_OR_ARMED_ROBBERY = "organised-or-armed-robbery"
    CULTURAL_GOODS_TRAFFICKING = "illicit-trafficking-in-cultural-goods"
    SWINDLING = "swindling"
    RACKETEERING_AND_EXTORTION = "racketeering-and-extortion"
    PRODUCT_COUNTERFEITING = "counterfeiting-and-piracy-of-products"
    DOCUMENT_FORGERY = "forgery-of-administrative-documents-and-trafficking-therein"
    PAYMENT_MEANS_FORGERY = "forgery-of-means-of-payment"
    HORMONE_TRAFFICKING = "illicit-trafficking-in-hormonal-substances-and-growth-promoters"
    NUCLEAR_MATERIALS_TRAFFICKING = "illicit-trafficking-in-nuclear-or-radioactive-materials"
    STOLEN_VEHICLES_TRAFFICKING = "trafficking-in-stolen-vehicles"
    RAPE = "rape"
    ARSON = "arson"
    ICC_CRIMES = "crimes-within-the-jurisdiction-of-the-international-criminal-court"
    UNLAWFUL_SEIZURE_OF_AIRCRAFT_SHIPS = "unlawful-seizure-of-aircraft-or-ships"
    SABOTAGE = "sabotage"
